"""Tests for the console's recent calls (`mcp_agg.observability.recent`)."""

from __future__ import annotations

from mcp_agg.observability.audit import CallRecord
from mcp_agg.observability.recent import KEEP, WINDOW, RecentCalls
from tests.fakes import FakeClock


def call(outcome: str = "ok", duration: float = 0.01, tool: str = "t") -> CallRecord:
    return CallRecord(tool, None if outcome == "unknown_tool" else "s", outcome, duration=duration)


def test_per_second_counts_of_calls_failures_and_refusals() -> None:
    clock = FakeClock(1000.0)
    recent = RecentCalls(clock)
    for outcome in ("ok", "ok", "error", "refused", "tool_error"):
        recent.observe(call(outcome))
    clock.advance(2)
    recent.observe(call())
    seconds = recent.seconds(3)
    assert [(s.at, s.calls, s.failures, s.refused) for s in seconds] == [
        (1000, 5, 2, 1),
        (1001, 0, 0, 0),
        (1002, 1, 0, 0),
    ]


def test_counts_older_than_the_window_are_dropped() -> None:
    clock = FakeClock(1000.0)
    recent = RecentCalls(clock)
    recent.observe(call())
    clock.advance(WINDOW)
    recent.observe(call())
    assert 1000 not in recent._seconds
    assert sum(s.calls for s in recent.seconds()) == 1


def test_per_tool_figures() -> None:
    recent = RecentCalls(FakeClock())
    for ms in range(1, 101):
        recent.observe(call(duration=ms / 1000))
    recent.observe(call("error", duration=1.0))
    recent.observe(call("refused"))  # counted, but no duration: it took none
    figures = recent.tool("t")
    assert figures is not None
    assert (figures.calls, figures.failures) == (102, 1)
    assert figures.p50_ms == 51.0
    assert figures.p99_ms == 100.0
    assert round(figures.error_rate, 4) == round(1 / 102, 4)
    assert recent.tool("never") is None


def test_unknown_tools_make_no_row_and_records_are_bounded() -> None:
    recent = RecentCalls(FakeClock())
    for _ in range(KEEP + 5):
        recent.observe(call("unknown_tool", tool="made-up"))
    assert recent.tool("made-up") is None
    assert len(recent.records) == KEEP
