"""JSON-RPC messages from and to the bytes of one line: both stdio wires' codec.

Every call crosses two stdio wires (the client's and the backend's), each way. The SDK
reads a line with its pydantic adapter (a union of four models, tried in turn) and
writes one with `model_dump_json`. Measured on the bench's echo and 1 MiB results
(docs/performance.md), orjson does the same work several times faster: a small message
parses in ~1 µs instead of ~8-18 µs, and a 2 MiB response is written in ~0.15 ms instead
of ~5 ms (pydantic serialises a `dict[str, Any]` value by value in Python-facing code).

Reading stays exactly as strict as the adapter: a line is parsed by orjson and built
into its message without validation only when it has one of the three plain shapes
(request, notification, response: `jsonrpc` "2.0", an integer or string id, a string
method, object params or result) and no other key; anything else, errors included, is
handed to the adapter, so what it refuses and how it says so does not change. Writing
falls back to pydantic for a value orjson does not take (an integer over 64 bits, a
model left in a dict): the output is the same JSON either way. `dumps` is that writer for
any JSON value (the size limits measure arguments and results with it).
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic_core
from mcp_types import (
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)

__all__ = ["decode", "dumps", "encode"]

_REQUEST = frozenset({"jsonrpc", "id", "method", "params"})
_NOTIFICATION = frozenset({"jsonrpc", "method", "params"})
_RESPONSE = frozenset({"jsonrpc", "id", "result"})


def decode(line: bytes) -> JSONRPCMessage:
    """The message on `line`; raises the adapter's ValidationError when it is not one."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        value = None  # the adapter says what is wrong with it
    message = _plain(value) if isinstance(value, dict) else None
    if message is None:
        return jsonrpc_message_adapter.validate_json(line, by_name=False)
    return message


def _plain(value: dict[str, Any]) -> JSONRPCMessage | None:
    """The message `value` is when it has a plain shape (module docstring), else None."""
    if value.get("jsonrpc") != "2.0":
        return None
    keys = value.keys()
    params = value.get("params")
    if "method" in value:
        if not isinstance(value["method"], str) or not isinstance(params, dict | None):
            return None
        if "id" not in value:
            return JSONRPCNotification.model_construct(**value) if keys <= _NOTIFICATION else None
        if keys <= _REQUEST and _valid_id(value["id"]):
            return JSONRPCRequest.model_construct(**value)
        return None
    if keys == _RESPONSE and isinstance(value["result"], dict) and _valid_id(value["id"]):
        return JSONRPCResponse.model_construct(**value)
    return None


def _valid_id(request_id: object) -> bool:
    """A JSON-RPC id the models take: a string, or an integer (not a boolean)."""
    return isinstance(request_id, str) or (
        isinstance(request_id, int) and not isinstance(request_id, bool)
    )


def encode(message: JSONRPCMessage) -> bytes:
    """`message` as one line of JSON, newline included; what `model_dump_json(by_alias=True,
    exclude_unset=True)` writes."""
    if not isinstance(message, JSONRPCError):  # ErrorData is a model: rare, left to pydantic
        given = message.model_fields_set
        wire = {
            name: getattr(message, name) for name in type(message).model_fields if name in given
        }
        try:
            return orjson.dumps(wire, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # orjson.JSONEncodeError: a value only pydantic can write
            pass
    return message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON (no spaces, non-ASCII unescaped), as
    `pydantic_core.to_json` writes it."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: a value only pydantic can write
        return pydantic_core.to_json(value)
