"""Tests for `mcp_agg.observability.audit_tail`: the console's recent calls read from
the end of a real audit log file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_agg.observability.audit_tail import read_tail, recent_lines


def line(n: int, **fields: object) -> str:
    entry = {
        "time": f"2026-12-07T08:00:{n:02d}.000+00:00",
        "client": f"client-{n}",
        "tool": f"tool_{n}",
        "server": "units",
        "replica": "units-1",
        "attempts": 1,
        "duration_ms": 1.5 + n,
        "outcome": "ok",
        **fields,
    }
    return json.dumps(entry)


def test_the_newest_first_up_to_count_with_their_fields(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line(n) + "\n" for n in range(10)))
    got = read_tail(path, 3)
    assert [(c.client, c.tool) for c in got] == [
        ("client-9", "tool_9"),
        ("client-8", "tool_8"),
        ("client-7", "tool_7"),
    ]
    first = got[0]
    assert (first.server, first.outcome, first.duration_ms, first.replica, first.error) == (
        "units",
        "ok",
        10.5,
        "units-1",
        None,
    )
    assert first.at == pytest.approx(1796630409.0)


def test_only_the_tail_is_read_its_cut_first_line_and_bad_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = [line(n) for n in range(40)]
    lines[38] = "not json at all"
    lines[37] = json.dumps(["a", "list"])
    lines[36] = line(36, tool=None)  # not an audit line
    path.write_text("\n".join(lines) + "\n" + line(40)[:25])  # the last one half written
    # The span starts 5 bytes before line 30: line 29's end is cut, so skipped.
    span = sum(len(text) + 1 for text in lines[30:]) + 25 + 5
    got = read_tail(path, 100, span=span)
    assert [c.tool for c in got] == [f"tool_{n}" for n in (39, 35, 34, 33, 32, 31, 30)]


def test_a_span_starting_on_a_line_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = [line(n) for n in range(5)]
    path.write_text("".join(text + "\n" for text in lines))
    span = sum(len(text) + 1 for text in lines[2:])
    assert [c.tool for c in read_tail(path, 100, span=span)] == ["tool_4", "tool_3", "tool_2"]


async def test_no_file_yet_is_no_calls(tmp_path: Path) -> None:
    assert await recent_lines(tmp_path / "audit.jsonl", 50) == []
