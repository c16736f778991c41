"""The last minutes of calls, for the web console: rates, recent records, per-tool latency.

Prometheus counters and histograms are cumulative: right for a scraper that keeps the
history, but the console has no scraper behind it and wants "calls per second over the
last ten minutes" and a p99 it can compute. So the metrics' per-call observer also
feeds this: per-second counts for `WINDOW` seconds, the last `KEEP` records, and per
tool its counts and its last `SAMPLES` durations. Each call costs a few dict and deque
operations; nothing is kept beyond those bounds.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

from mcp_agg.observability.audit import CallRecord

__all__ = ["KEEP", "SAMPLES", "WINDOW", "RecentCalls", "Second", "ToolFigures"]

#: Seconds of per-second counts kept.
WINDOW = 600
#: Finished calls kept as records.
KEEP = 200
#: Durations kept per tool for its percentiles.
SAMPLES = 512
#: Outcomes that are failures of the call (a refusal is counted on its own).
_FAILED = frozenset({"error", "tool_error", "unknown_tool"})


@dataclass(frozen=True, slots=True)
class Second:
    """The calls that finished in one second."""

    at: int
    calls: int
    failures: int
    refused: int


@dataclass(frozen=True, slots=True)
class ToolFigures:
    """One tool's calls since the gateway started, and percentiles of its recent ones."""

    calls: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished call, with when it finished."""

    at: float
    call: CallRecord


class RecentCalls:
    """Told of every finished call (an `audit.CallObserver`), read by the console."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._seconds: collections.OrderedDict[int, list[int]] = collections.OrderedDict()
        self.records: collections.deque[Finished] = collections.deque(maxlen=KEEP)
        self._tools: dict[str, list[int]] = {}
        self._durations: dict[str, collections.deque[float]] = {}

    def observe(self, call: CallRecord) -> None:
        now = self._clock()
        second = int(now)
        counts = self._seconds.get(second)
        if counts is None:
            counts = self._seconds[second] = [0, 0, 0]
            while next(iter(self._seconds)) <= second - WINDOW:
                self._seconds.popitem(last=False)
        failed = call.outcome in _FAILED
        refused = call.outcome == "refused"
        counts[0] += 1
        counts[1] += failed
        counts[2] += refused
        self.records.append(Finished(now, call))
        if call.server is None:  # an unknown tool: a client's made-up name makes no row
            return
        tool = self._tools.setdefault(call.tool, [0, 0])
        tool[0] += 1
        tool[1] += failed
        if call.outcome in ("ok", "tool_error", "error"):
            durations = self._durations.get(call.tool)
            if durations is None:
                durations = self._durations[call.tool] = collections.deque(maxlen=SAMPLES)
            durations.append(call.duration)

    def seconds(self, span: int = WINDOW) -> list[Second]:
        """Every second of the last `span` (oldest first), those without calls too."""
        now = int(self._clock())
        return [
            Second(at, *self._seconds.get(at, (0, 0, 0)))
            for at in range(now - min(span, WINDOW) + 1, now + 1)
        ]

    def tool(self, name: str) -> ToolFigures | None:
        """A tool's figures; None if it was never called."""
        counts = self._tools.get(name)
        if counts is None:
            return None
        durations = sorted(self._durations.get(name, ()))
        return ToolFigures(
            counts[0], counts[1], _quantile_ms(durations, 0.5), _quantile_ms(durations, 0.99)
        )


def _quantile_ms(ordered: list[float], q: float) -> float | None:
    """The nearest-rank quantile `q` of sorted durations, in milliseconds."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q), at least 1
    return round(ordered[int(rank) - 1] * 1000, 1)
