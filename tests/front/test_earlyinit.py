"""The handshake answered before the MCP stack is imported (`mcp_agg.front.earlyinit`):
what it answers, that it answers as the SDK does, and the thread that reads the first line.

tests/e2e/test_startup.py has a real gateway compare the answer with its SDK's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_types import version as sdk_version

from mcp_agg.front.earlyinit import (
    CAPABILITIES,
    HANDSHAKE_VERSIONS,
    MODERN_CAPABILITIES,
    MODERN_VERSIONS,
    EarlyAnswer,
    EarlyInitialize,
    early_answer,
)
from mcp_agg.front.server import build_server
from tests.fakes import make_gateway

SERVER = {"name": "gw", "version": "9"}
META = "io.modelcontextprotocol/"
CLIENT = {"name": "c", "version": "1"}


def initialize(version: object = "2025-06-18", **params: Any) -> dict[str, Any]:
    body = {"protocolVersion": version, "capabilities": {}, "clientInfo": CLIENT, **params}
    return {"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": body}


def discover(version: str = "2026-07-28", **meta: Any) -> dict[str, Any]:
    fields = {
        f"{META}protocolVersion": version,
        f"{META}clientInfo": CLIENT,
        f"{META}clientCapabilities": {},
        **meta,
    }
    return {"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": fields}}


def handshake_result(version: str) -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": CAPABILITIES, "serverInfo": SERVER}


DISCOVERED = {
    "_meta": {f"{META}serverInfo": SERVER},
    "ttlMs": 0,
    "cacheScope": "private",
    "supportedVersions": ["2026-07-28"],
    "capabilities": MODERN_CAPABILITIES,
    "resultType": "complete",
}


@pytest.mark.parametrize(
    ("message", "result"),
    [
        *((initialize(v), handshake_result(v)) for v in HANDSHAKE_VERSIONS),
        # A version the handshake does not reach: the newest that it does, as the SDK.
        (initialize("2026-07-28"), handshake_result("2025-11-25")),
        (initialize("1999-01-01"), handshake_result("2025-11-25")),
        (initialize(capabilities={"roots": {"listChanged": True}}), handshake_result("2025-06-18")),
        (discover(), DISCOVERED),
        # Left to the SDK: its errors, and what it validates that a client could get wrong.
        (discover("2025-11-25"), None),  # "Unsupported protocol version"
        (discover(**{f"{META}logLevel": "debug"}), None),
        (initialize(1), None),
        (initialize(clientInfo={"name": "c"}), None),
        (initialize(capabilities={"roots": True}), None),
        ({**initialize(), "id": True}, None),
        ({**initialize(), "id": None}, None),
        ({**initialize(), "jsonrpc": "1.0"}, None),
        ({**initialize(), "extra": 1}, None),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}, None),
        ({"jsonrpc": "2.0", "method": "initialize", "params": initialize()["params"]}, None),
        ([initialize()], None),
    ],
)
def test_a_handshake_is_answered_as_the_sdk_would_and_anything_else_left_to_it(
    message: Any, result: dict[str, Any] | None
) -> None:
    answer = early_answer(json.dumps(message).encode(), "gw", "9")
    expected = None if result is None else EarlyAnswer(message["id"], result)
    assert answer == expected


@pytest.mark.parametrize("line", [b"not json", b"", b'{"jsonrpc": "2.0"'])
def test_a_line_that_is_not_json_is_left_to_the_sdk(line: bytes) -> None:
    assert early_answer(line, "gw", "9") is None


def test_the_versions_are_the_sdks() -> None:
    assert sdk_version.HANDSHAKE_PROTOCOL_VERSIONS == HANDSHAKE_VERSIONS
    assert sdk_version.MODERN_PROTOCOL_VERSIONS == MODERN_VERSIONS


@pytest.mark.parametrize(
    ("servers", "gateway"),
    [
        ([], {}),
        ([{"name": "s", "command": "python"}], {"tool_mode": "search"}),
        (
            [{"name": "s", "command": "python", "cache": {"tools": ["get_*"], "ttl": 5}}],
            {"name": "other", "expose_gateway_tools": False},
        ),
    ],
)
def test_the_capabilities_are_the_servers_whatever_the_config(
    tmp_path: Path, servers: list[dict[str, Any]], gateway: dict[str, Any]
) -> None:
    """The server's capabilities are `server/discover`'s; the handshake's answer leaves
    the extensions out (the SDK's, compared by the e2e test)."""
    server = build_server(make_gateway(tmp_path, servers, **gateway))
    options = server._mcp_server.create_initialization_options()
    declared = options.capabilities.model_dump(by_alias=True, exclude_none=True)
    assert declared == MODERN_CAPABILITIES
    assert {key: value for key, value in declared.items() if key != "extensions"} == CAPABILITIES


@pytest.fixture
def pipes() -> Iterator[tuple[int, int, int, int]]:
    """(client's write end, gateway's stdin, gateway's stdout, client's read end)."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    yield stdin_w, stdin_r, stdout_w, stdout_r
    for fd in (stdin_r, stdin_w, stdout_r, stdout_w):
        with contextlib.suppress(OSError):  # a test closed it
            os.close(fd)


def started(stdin: int, stdout: int, limit: int = 10_000) -> EarlyInitialize:
    early = EarlyInitialize("gw", "9", limit=limit, fd_in=stdin, fd_out=stdout)
    early.start()
    return early


def answered(fd: int, timeout: float = 5.0) -> dict[str, Any]:
    """The one line written to `fd`, waited for up to `timeout`."""
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "no answer was written"
    data = os.read(fd, 65536)
    assert data.count(b"\n") == 1
    assert data.endswith(b"\n")
    parsed: dict[str, Any] = json.loads(data)
    return parsed


def nothing_written(fd: int) -> bool:
    return not select.select([fd], [], [], 0)[0]


def test_the_first_line_is_answered_and_handed_over_with_what_followed_it(
    pipes: tuple[int, int, int, int],
) -> None:
    client, stdin, stdout, replies = pipes
    early = started(stdin, stdout)
    first = json.dumps(initialize()).encode() + b"\n"
    os.write(client, first + b'{"jsonrpc": "2.0", "method": "notifications/init')
    result = handshake_result("2025-06-18")
    assert answered(replies) == {"jsonrpc": "2.0", "id": 7, "result": result}
    read, answer = early.handover()
    # Everything read, to the byte; what it did not read is still in the pipe.
    assert read.startswith(first)
    assert answer == EarlyAnswer(7, result)
    os.write(client, b'ialized"}\n')
    assert (read + os.read(stdin, 65536)).endswith(b'"notifications/initialized"}\n')


@pytest.mark.parametrize(
    "sent",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n',  # not a handshake
        b"x" * 200 + b"\n",  # longer than the limit
        b"",  # EOF before a line
    ],
)
def test_anything_but_a_handshake_is_handed_over_unanswered(
    pipes: tuple[int, int, int, int], sent: bytes
) -> None:
    client, stdin, stdout, replies = pipes
    early = started(stdin, stdout, limit=100)
    os.write(client, sent)
    if not sent:
        os.close(client)
    read, answer = early.handover() if not sent else _when_done(early)
    assert answer is None
    assert read == sent or (len(sent) > 100 and sent.startswith(read) and len(read) > 100)
    assert nothing_written(replies)


def _when_done(early: EarlyInitialize) -> tuple[bytes, EarlyAnswer | None]:
    """Hand over once the thread has stopped by itself (it read a whole line or more
    than the limit), waited for with a deadline."""
    thread = early._thread
    assert thread is not None
    thread.join(timeout=5)
    assert not thread.is_alive(), "the reader kept reading past its first line"
    return early.handover()


def test_the_front_takes_stdin_over_before_the_client_said_anything(
    pipes: tuple[int, int, int, int],
) -> None:
    _client, stdin, stdout, replies = pipes
    early = started(stdin, stdout)
    assert early.handover() == (b"", None)
    assert nothing_written(replies)


def test_stdin_that_cannot_be_waited_on_is_left_to_the_front(tmp_path: Path) -> None:
    regular = tmp_path / "input"
    regular.write_bytes(json.dumps(initialize()).encode() + b"\n")
    fd = os.open(regular, os.O_RDONLY)
    try:
        early = EarlyInitialize("gw", "9", limit=1000, fd_in=fd, fd_out=-1)
        early.start()
        assert early.handover() == (b"", None)
        assert os.read(fd, 10) == b'{"jsonrpc"'  # nothing consumed
    finally:
        os.close(fd)
