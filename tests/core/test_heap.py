"""Tests for mcp_agg.core.heap: the heap frozen once the gateway is ready, and the
startup observer it wraps told everything as before."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from mcp_agg.core.heap import SettleWhenReady


class Recording:
    """A startup observer that notes what it was told, and whether the heap was frozen
    by then."""

    def __init__(self) -> None:
        self.told: list[tuple[str, Any]] = []

    def starting(self, replicas: Sequence[str]) -> None:
        self.told.append(("starting", list(replicas)))

    def replica_done(self, outcome: Any) -> None:
        self.told.append(("replica_done", outcome))

    def ready(self, summary: Any) -> None:
        self.told.append(("ready", gc.get_freeze_count()))


@pytest.fixture
def thawed() -> Iterator[None]:
    """No frozen heap before the test, and none left after it (the test process builds
    gateways again and again: what it freezes would never be collected)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("thawed")
def test_the_heap_is_frozen_once_the_gateway_is_ready_and_not_before() -> None:
    recording = Recording()
    observer = SettleWhenReady(recording)
    observer.starting(["a", "b"])
    observer.replica_done("a connected")
    assert gc.get_freeze_count() == 0
    observer.ready("summary")
    assert gc.get_freeze_count() > 0
    # The wrapped observer was told everything, the summary before the freeze.
    assert recording.told == [
        ("starting", ["a", "b"]),
        ("replica_done", "a connected"),
        ("ready", 0),
    ]
