"""Tests for reading a stdio client's lines (`mcp_agg.front.inbound`)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCRequest

from mcp_agg.front.inbound import read_line, read_oversized
from mcp_agg.front.lines import Oversized


def test_a_request_reaches_the_session() -> None:
    inbound = read_line(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}')
    assert isinstance(inbound, SessionMessage)
    assert inbound.message == JSONRPCRequest(jsonrpc="2.0", id=1, method="ping")


def test_a_notification_reaches_the_session() -> None:
    inbound = read_line(b'{"jsonrpc": "2.0", "method": "n", "params": {"id": 3}}')
    assert isinstance(inbound, SessionMessage)
    assert isinstance(inbound.message, JSONRPCNotification)


def test_a_blank_line_is_nothing() -> None:
    assert read_line(b" \r\t") is None


@pytest.mark.parametrize(
    ("line", "code", "request_id", "why"),
    [
        (b"{", -32700, None, "Parse error"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "\xff"}', -32700, None, "Parse error"),
        (b"[]", -32600, None, "batches"),
        (b"null", -32600, None, "a JSON object"),
        (b'{"jsonrpc": "1.0", "id": 5, "method": "ping"}', -32600, 5, "jsonrpc"),
        (b'{"jsonrpc": "2.0", "id": false, "method": "ping"}', -32600, None, "id must"),
        (b'{"jsonrpc": "2.0", "id": [], "method": "ping"}', -32600, None, "id must"),
        (b'{"jsonrpc": "2.0", "id": "a", "method": {}}', -32600, "a", "method must"),
        (b'{"jsonrpc": "2.0", "id": 6, "method": "m", "params": 1}', -32600, 6, "params"),
        (b'{"jsonrpc": "2.0", "id": 7}', -32600, 7, "not a JSON-RPC"),
    ],
)
def test_an_invalid_line_is_answered(line: bytes, code: int, request_id: Any, why: str) -> None:
    answer = read_line(line)
    assert isinstance(answer, JSONRPCError)
    assert (answer.id, answer.error.code) == (request_id, code)
    assert why in answer.error.message


def test_an_invalid_response_fails_the_request_it_answers() -> None:
    """The client's broken answer to a backend's request: that request fails now."""
    inbound = read_line(b'{"jsonrpc": "2.0", "id": 9, "result": 3}')
    assert isinstance(inbound, SessionMessage)
    message = inbound.message
    assert isinstance(message, JSONRPCError)
    assert (message.id, message.error.code) == (9, -32600)


def test_an_invalid_response_without_an_id_is_dropped() -> None:
    assert read_line(b'{"jsonrpc": "2.0", "result": 3}') is None


def test_an_oversized_request_is_refused_under_its_id() -> None:
    answer = read_oversized(Oversized(100, {"method": "tools/call", "id": "r1"}), 64)
    assert isinstance(answer, JSONRPCError)
    assert (answer.id, answer.error.code) == ("r1", -32600)
    assert "100 bytes" in answer.error.message
    assert "max_message_bytes" in answer.error.message


@pytest.mark.parametrize("head", [None, [0], {"method": "m"}, {"method": "m", "id": True}])
def test_an_oversized_line_without_an_id_is_refused_with_a_null_id(head: Any) -> None:
    answer = read_oversized(Oversized(100, head), 64)
    assert isinstance(answer, JSONRPCError)
    assert answer.id is None


def test_an_oversized_response_fails_the_request_it_answers() -> None:
    inbound = read_oversized(Oversized(100, {"id": 4, "result": 0}), 64)
    assert isinstance(inbound, SessionMessage)
    assert isinstance(inbound.message, JSONRPCError)
    assert inbound.message.id == 4
