"""The gateway contract over both fronts, with real backend processes behind them."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Front
from tests.e2e.contract import GatewayContract

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


class TestStdioFront(GatewayContract):
    @pytest.fixture
    def front(self, stdio_front: Front) -> Front:
        return stdio_front


class TestHttpFront(GatewayContract):
    @pytest.fixture
    def front(self, http_front: Front) -> Front:
        return http_front
