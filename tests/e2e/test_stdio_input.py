"""Hostile input on the stdio front: every line a client sends gets its JSON-RPC answer.

A real `mcp-agg serve` on stdio, spoken to by a raw client (bytes on its stdin, lines
from its stdout), gets lines that are not JSON, JSON that is not a JSON-RPC request
(a batch array, `"jsonrpc": "1.0"`, an id of the wrong type...), and a line far longer
than `[gateway] max_message_bytes`. Each must be answered as JSON-RPC 2.0 says (-32700
parse error with `"id": null`; -32600 invalid request, with the request's id when one
can be read), at once, never by silence the client would wait out; and the gateway
serves on. The long line must not be held in memory while it is discarded.
(The HTTP front's hostile input is test_hostile_input.py.)
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import (
    PYTHON,
    StdioPeer,
    demo_servers,
    kill_group,
    peak_rss,
    stdio_gateway,
)

pytestmark = pytest.mark.e2e

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MIB = 1024 * 1024


def units_config(folder: Path, extra: str = "") -> Path:
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 30
{extra}
{demo_servers(folder, "units")}"""
    )
    return config


def assert_serving(peer: StdioPeer, request_id: int) -> None:
    """A good tools/call is answered."""
    params = {"name": "units_add", "arguments": {"a": 2, "b": 3}}
    answer = peer.request("tools/call", params, request_id)
    assert answer["result"]["content"][0]["text"] == "5.0", answer


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioPeer]:
    with stdio_gateway(units_config(tmp_path_factory.mktemp("stdio-input"))) as peer:
        peer.initialize("test_stdio_input")
        yield peer


# (line, expected code, expected id)
BAD_LINES: dict[str, tuple[bytes, int, Any]] = {
    "not JSON": (b"this is not json", PARSE_ERROR, None),
    "cut short": (b'{"jsonrpc": "2.0", "id": 31, "method": "pi', PARSE_ERROR, None),
    "not UTF-8": (b'{"jsonrpc": "2.0", "id": 32, "method": "\xff\xfe"}', PARSE_ERROR, None),
    "a batch": (b'[{"jsonrpc": "2.0", "id": 33, "method": "ping"}]', INVALID_REQUEST, None),
    "an empty batch": (b"[]", INVALID_REQUEST, None),
    "a string": (b'"ping"', INVALID_REQUEST, None),
    "a number": (b"34", INVALID_REQUEST, None),
    "an empty object": (b"{}", INVALID_REQUEST, None),
    "JSON-RPC 1.0": (b'{"jsonrpc": "1.0", "id": 35, "method": "ping"}', INVALID_REQUEST, 35),
    "no jsonrpc": (b'{"id": "thirty-six", "method": "ping"}', INVALID_REQUEST, "thirty-six"),
    "no method": (b'{"jsonrpc": "2.0", "id": 37}', INVALID_REQUEST, 37),
    "method not a string": (b'{"jsonrpc": "2.0", "id": 38, "method": 5}', INVALID_REQUEST, 38),
    "params an array": (
        b'{"jsonrpc": "2.0", "id": 39, "method": "ping", "params": [1]}',
        INVALID_REQUEST,
        39,
    ),
    "id a boolean": (b'{"jsonrpc": "2.0", "id": true, "method": "ping"}', INVALID_REQUEST, None),
    "id null": (b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', INVALID_REQUEST, None),
    "id a float": (b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', INVALID_REQUEST, None),
    "id an object": (b'{"jsonrpc": "2.0", "id": {}, "method": "ping"}', INVALID_REQUEST, None),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_an_invalid_line_gets_its_json_rpc_error(peer: StdioPeer, case: str) -> None:
    line, code, request_id = BAD_LINES[case]
    peer.write(line + b"\n")
    # At once: a client would otherwise wait out its own timeout.
    answer = peer.receive(timeout=5)
    assert "result" not in answer, answer
    assert answer["id"] == request_id, answer
    assert answer["error"]["code"] == code, answer
    assert isinstance(answer["error"]["message"], str), answer
    assert_serving(peer, 100)


def test_blank_lines_are_passed_over(peer: StdioPeer) -> None:
    peer.write(b"\n  \n\r\n")
    assert_serving(peer, 101)


def test_an_oversized_line_is_refused_without_being_held(tmp_path: Path) -> None:
    """A 70 MiB tools/call (as a client sends when a large file goes in an argument): an
    error naming the limit for its id, the line discarded as it streams past (the
    gateway's peak memory grows by far less than the line), and the gateway serves on."""
    size = 70 * MIB
    with stdio_gateway(units_config(tmp_path)) as peer:
        peer.initialize("test_stdio_input")
        assert_serving(peer, 1)
        before = peak_rss(peer.proc.pid)
        # The id after the huge params, as the TypeScript SDK orders a request's keys.
        peer.write(b'{"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "units_add", ')
        peer.write(b'"arguments": {"a": 1, "b": "')
        chunk = b"x" * MIB
        for _ in range(size // MIB):
            peer.write(chunk)
        peer.write(b'"}}, "id": 42}\n')
        answer = peer.answer(42, timeout=60)
        assert answer["error"]["code"] == INVALID_REQUEST, answer
        assert "max_message_bytes" in answer["error"]["message"], answer
        growth = peak_rss(peer.proc.pid) - before
        assert growth < size // 3, f"the gateway's peak memory grew by {growth / MIB:.0f} MiB"
        assert_serving(peer, 2)


def test_max_message_bytes_sets_the_limit(tmp_path: Path) -> None:
    """Under the limit a message is served; over it, refused with its id."""
    with stdio_gateway(units_config(tmp_path, "max_message_bytes = 2048")) as peer:
        peer.initialize("test_stdio_input")
        params = {"name": "units_add", "arguments": {"a": 1, "b": 2, "pad": "p" * 1024}}
        answer = peer.request("tools/call", params, 1)
        assert "result" in answer, answer
        params["arguments"]["pad"] = "p" * 4096
        answer = peer.request("tools/call", params, 2)
        assert answer["error"]["code"] == INVALID_REQUEST, answer
        assert_serving(peer, 3)


@pytest.mark.parametrize("stdout", ["pipe", "file"])
def test_stdin_from_dev_null_ends_the_gateway_cleanly(tmp_path: Path, stdout: str) -> None:
    """`mcp-agg serve < /dev/null`: EOF at once, and a clean exit (the event loop cannot
    wait on /dev/null: it is read in a thread)."""
    with (tmp_path / "stdout").open("wb") as file:
        proc = subprocess.Popen(
            [PYTHON, "-m", "mcp_agg", "serve", "-c", str(units_config(tmp_path))],
            stdin=subprocess.DEVNULL,
            stdout=file if stdout == "file" else subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            kill_group(proc)
