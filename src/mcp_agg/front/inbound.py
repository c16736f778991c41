"""A stdio client's line as a JSON-RPC message, or the error that answers it.

The MCP SDK's stdio server hands a line it cannot read to the session as an exception,
and the session drops it: a client that sent a batch, `"jsonrpc": "1.0"` or a typo
waits out its own timeout for an answer that never comes. JSON-RPC 2.0 wants an answer:
-32700 (parse error) for what is not JSON, -32600 (invalid request) for JSON that is
not a request, under the request's id when one can be read and `null` otherwise. Since
the 2025-06-18 revision MCP has no batches, so an array is an invalid request too.

A valid line costs one parse (`mcp_agg.codec.decode`); only a line the SDK's adapter
refuses, or a notification that carries an `id` (the adapter reads an
invalid id as no id), is looked at again to say what is wrong with it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.shared.message import SessionMessage
from mcp_types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
)
from pydantic import ValidationError

from mcp_agg.codec import decode
from mcp_agg.front.lines import Oversized

__all__ = ["Inbound", "read_line", "read_oversized"]

logger = logging.getLogger(__name__)

#: What one line becomes: a message for the session, an error to write back to the
#: client, or nothing (a line with nothing to answer).
Inbound = SessionMessage | JSONRPCError | None


def read_line(line: bytes) -> Inbound:
    """One line (without its newline) from the client."""
    if not line or line.isspace():
        return None  # blank lines between messages are harmless (isspace copies nothing)
    try:
        message = decode(line)
    except ValidationError as exc:
        return _refuse(line, exc)
    if isinstance(message, JSONRPCNotification) and b'"id"' in line:
        # The adapter reads a request whose id is not a string or an integer (true,
        # null, 1.5) as a notification: it is an invalid request.
        value = json.loads(line)
        if "id" in value:
            return _invalid({}, "id must be a string or an integer")
    return SessionMessage(message)


def read_oversized(line: Oversized, limit: int) -> Inbound:
    """A line over `max_message_bytes`, discarded unread."""
    reason = (
        f"message of {line.size} bytes refused: the limit is {limit} bytes "
        "([gateway] max_message_bytes)"
    )
    logger.warning("client's %s", reason)
    return _invalid(line.head if isinstance(line.head, dict) else {}, reason)


def _refuse(line: bytes, exc: ValidationError) -> Inbound:
    """The error for a line the SDK's adapter refused: why, as far as it can be said."""
    try:
        value = json.loads(line.decode("utf-8"))
    except ValueError:  # not UTF-8, or not JSON
        return _error(None, PARSE_ERROR, f"Parse error: {_first_error(exc)}")
    if isinstance(value, list):
        return _invalid({}, "batches are not supported: send one message per line")
    if not isinstance(value, dict):
        return _invalid({}, "a message is a JSON object")
    if value.get("jsonrpc") != "2.0":
        return _invalid(value, 'jsonrpc must be "2.0"')
    if "id" in value and _id_of(value) is None:
        return _invalid({}, "id must be a string or an integer")
    if "method" in value and not isinstance(value["method"], str):
        return _invalid(value, "method must be a string")
    if "params" in value and not isinstance(value["params"], dict | None):
        return _invalid(value, "params must be an object")
    return _invalid(value, "not a JSON-RPC request, notification or response")


def _invalid(message: dict[str, Any], why: str) -> Inbound:
    """-32600 for an invalid request, under its id if it has a valid one.

    What looks like the client's response (to a request of a backend's, relayed to it)
    is not answered: it reaches the session as an error under its id, so that the
    backend's request fails now instead of at its timeout.
    """
    request_id = _id_of(message)
    if "method" not in message and ("result" in message or "error" in message):
        if request_id is None:
            logger.warning("client sent an invalid response without an id: %s", why)
            return None
        error = ErrorData(code=INVALID_REQUEST, message=f"the client's answer was invalid: {why}")
        return SessionMessage(JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
    return _error(request_id, INVALID_REQUEST, f"Invalid Request: {why}")


def _id_of(value: dict[str, Any]) -> str | int | None:
    """The message's id when it is a valid one (a string or an integer), else None."""
    request_id = value.get("id")
    if isinstance(request_id, str) or (
        isinstance(request_id, int) and not isinstance(request_id, bool)
    ):
        return request_id
    return None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    return str(errors[0]["msg"]) if errors else str(exc)


def _error(request_id: str | int | None, code: int, message: str) -> JSONRPCError:
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))
