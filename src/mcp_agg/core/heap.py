"""The serving gateway's heap: what it built to start is kept out of the collector's passes.

By the time the catalog is built the process holds about 140,000 objects that track
references (the MCP SDK, FastMCP, pydantic's schemas, the config, the catalog), and
nearly all of them live until it exits. CPython's collector walks every one of them
in each full (generation 2) pass: about 75 ms of CPU on the development machine. A
relayed call leaves a few reference cycles behind (tasks, cancel scopes, exceptions),
enough for a full pass every ~2,000 echo calls over stdio: ~35 µs a call on average,
and one call in 2,000 held up by the whole pass. `gc.freeze()` moves what exists into
the permanent generation, which the collector never walks; the young generations and
everything made later are collected as before.

It is done without a collection first (`gc.collect()` would put the same 75 ms on the
way to the first answer): the reference cycles that are garbage at that moment stay
(measured: ~700 objects, once). Frozen objects are still freed when their last reference
goes; only those of them that end up in unreachable cycles (parts of the start-up
catalog that a reload or a `list_changed` replaces) are never freed: a cost bounded by
the start-up heap, paid once, since everything made later is collected as usual. `serve`
does it, as the catalog is ready; the other commands and the tests, which build gateways
again and again in one process, do not. See docs/performance.md, round three.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp_agg.console.startup import ReplicaOutcome, StartupObserver, StartupSummary

__all__ = ["SettleWhenReady"]


class SettleWhenReady:
    """A `StartupObserver` that tells `observer` everything and, once the gateway is
    ready, freezes the heap (module docstring)."""

    def __init__(self, observer: StartupObserver) -> None:
        self._observer = observer

    def starting(self, replicas: Sequence[str]) -> None:
        self._observer.starting(replicas)

    def replica_done(self, outcome: ReplicaOutcome) -> None:
        self._observer.replica_done(outcome)

    def ready(self, summary: StartupSummary) -> None:
        self._observer.ready(summary)
        gc.freeze()
