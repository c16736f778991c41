"""The stdio transport's line reader: whole lines, however the pipe cuts them."""

from __future__ import annotations

import json

import pytest

from mcp_agg.backend.transports.stdio import _parse, split_lines


def read(chunks: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    pending: list[bytes] = []
    lines = [line for chunk in chunks for line in split_lines(pending, chunk)]
    return lines, pending


def test_lines_within_one_chunk() -> None:
    assert read([b'{"a":1}\n{"b":2}\n']) == ([b'{"a":1}', b'{"b":2}'], [])


def test_a_line_cut_across_chunks_is_joined_once() -> None:
    lines, pending = read([b'{"a":', b"1", b'}\n{"b"', b":2}\n"])
    assert lines == [b'{"a":1}', b'{"b":2}']
    assert pending == []


def test_an_unfinished_line_waits_for_its_newline() -> None:
    lines, pending = read([b"first\nsec", b"ond"])
    assert lines == [b"first"]
    assert b"".join(pending) == b"second"
    assert list(split_lines(pending, b"\n")) == [b"second"]


def test_empty_lines_and_a_chunk_that_is_only_a_newline() -> None:
    assert read([b"\n", b"x\n\n"]) == ([b"", b"x", b""], [])


@pytest.mark.parametrize("chunk_size", [1, 7, 65536])
def test_any_cut_gives_the_same_lines(chunk_size: int) -> None:
    data = b"".join(json.dumps({"id": i, "text": "y" * i}).encode() + b"\n" for i in range(50))
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]
    lines, pending = read(chunks)
    assert lines == data.split(b"\n")[:-1]
    assert pending == []


def test_a_line_that_is_not_json_rpc_is_an_error_value() -> None:
    assert isinstance(_parse(b"not json"), Exception)
    message = _parse(b'{"jsonrpc":"2.0","id":1,"result":{}}')
    assert not isinstance(message, Exception)
