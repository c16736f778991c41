"""Tests for the stdio front's line framing (`mcp_agg.front.lines`, `.skeleton`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcp_agg.front.lines import LineSplitter, Oversized
from mcp_agg.front.skeleton import Skeleton


def skeleton_of(text: bytes, chunk: int) -> Any:
    skeleton = Skeleton()
    for start in range(0, len(text), chunk):
        skeleton.feed(text[start : start + chunk])
    return skeleton.value()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize(
    ("text", "top"),
    [
        (
            b'{"jsonrpc": "2.0", "method": "tools/call", "params": {"a": [1, {"b": "}]"}]}, '
            b'"id": 42}',
            {"jsonrpc": "2.0", "method": "tools/call", "params": 0, "id": 42},
        ),
        (b'{"params": {"s": "\\"{[\\\\"}, "id": "x\\"y"}', {"params": 0, "id": 'x"y'}),
        (b'[{"id": 1}, {"id": 2}]', [0, 0]),
        (b'"ping"', "ping"),
        (b"  34 ", 34),
        (b"{}", {}),
    ],
)
def test_the_skeleton_keeps_the_top_level(text: bytes, top: Any, chunk: int) -> None:
    assert skeleton_of(text, chunk) == top


def test_a_long_top_level_string_is_kept_empty() -> None:
    text = json.dumps({"method": "x" * 10_000, "id": 3}).encode()
    assert skeleton_of(text, 100) == {"method": "", "id": 3}


@pytest.mark.parametrize("text", [b'{"id": 1', b'{"id": "1}', b"not json", b"]]]"])
def test_what_is_not_json_has_no_skeleton(text: bytes) -> None:
    assert skeleton_of(text, 3) is None


def test_past_scan_the_members_completed_are_known_and_a_last_id() -> None:
    """The text is read up to `scan` only (its first bytes, where the SDKs put the
    members other than the params); the id may be the last member."""
    text = b'{"jsonrpc": "2.0", "method": "m", "params": [' + b"[0]," * 100_000 + b'0], "id": 5}'
    skeleton = Skeleton(scan=1000)
    for start in range(0, len(text), 4096):
        skeleton.feed(text[start : start + 4096])
    assert skeleton.value() == {"jsonrpc": "2.0", "method": "m", "id": 5}
    assert len(skeleton._kept) <= 1000


@pytest.mark.parametrize(
    ("text", "top"),
    [
        (b'{"id": 3, "params": {"a": "' + b"x" * 5000 + b'"}}', {"id": 3}),
        (b'{"params": {"id": 4, "a": "' + b"x" * 5000 + b'"}}', {}),  # not the top level's
        (b'[{"id": 1}, "' + b"x" * 5000 + b'"]', None),
    ],
)
def test_past_scan_only_the_top_level_counts(text: bytes, top: Any) -> None:
    skeleton = Skeleton(scan=100)
    skeleton.feed(text)
    assert skeleton.value() == top


def lines_of(chunks: list[bytes], limit: int = 10) -> list[bytes | Oversized]:
    splitter = LineSplitter(limit)
    return [line for chunk in chunks for line in splitter.feed(chunk)]


def test_lines_across_chunks() -> None:
    assert lines_of([b"ab", b"c\nde", b"f\n\ng", b"\n"]) == [b"abc", b"def", b"", b"g"]


def test_an_unfinished_line_waits_for_its_newline() -> None:
    splitter = LineSplitter(10)
    assert list(splitter.feed(b"abc")) == []
    assert list(splitter.feed(b"\n")) == [b"abc"]


def test_a_line_at_the_limit_is_kept() -> None:
    assert lines_of([b"0123456789\n"]) == [b"0123456789"]


def test_a_line_over_the_limit_is_dropped_as_it_streams() -> None:
    splitter = LineSplitter(16)
    head = b'{"method": "m", "params": "'
    assert list(splitter.feed(head)) == []
    for _ in range(1000):
        assert list(splitter.feed(b"x" * 1000)) == []
        assert splitter._pieces == []  # nothing of it is held
    lines = list(splitter.feed(b'", "id": 7}\nnext\n'))
    size = len(head) + 1000 * 1000 + len(b'", "id": 7}')
    assert lines == [Oversized(size, {"method": "m", "id": 7}), b"next"]
