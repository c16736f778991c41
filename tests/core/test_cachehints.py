"""The cache hint of a merged list: as fresh as its stalest part, as private as its most
private one."""

from __future__ import annotations

import pytest
from mcp.server.caching import CacheHint

from mcp_agg.core.cachehints import merge_hints

PUBLIC_60 = CacheHint(ttl_ms=60_000, scope="public")
PUBLIC_5 = CacheHint(ttl_ms=5_000, scope="public")
PRIVATE_30 = CacheHint(ttl_ms=30_000, scope="private")
#: What a handshake-era backend's list says: nothing, which is the SDK's default.
HANDSHAKE = CacheHint()


@pytest.mark.parametrize(
    ("parts", "merged"),
    [
        pytest.param([], CacheHint(0, "private"), id="no-parts"),
        pytest.param([PUBLIC_60], PUBLIC_60, id="one-part-as-sent"),
        pytest.param([PUBLIC_60, PUBLIC_5], PUBLIC_5, id="smallest-ttl"),
        pytest.param([PUBLIC_5, PUBLIC_60], PUBLIC_5, id="order-does-not-matter"),
        pytest.param([PUBLIC_60, PRIVATE_30], CacheHint(30_000, "private"), id="private-wins"),
        pytest.param([PRIVATE_30, PUBLIC_5], CacheHint(5_000, "private"), id="both-rules"),
        pytest.param([PUBLIC_60, HANDSHAKE], CacheHint(0, "private"), id="handshake-part-is-0"),
    ],
)
def test_merge_rule(parts: list[CacheHint], merged: CacheHint) -> None:
    assert merge_hints(parts) == merged
