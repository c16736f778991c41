"""mcp_agg.codec: the same messages, errors and bytes as the SDK's pydantic adapter, the
plain shapes without it."""

from __future__ import annotations

from typing import Any

import pydantic_core
import pytest
from mcp_types import (
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import BaseModel, ValidationError

from mcp_agg import codec

#: Lines with one of the plain shapes: read without the adapter.
PLAIN = [
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{}}}',
    b'{"jsonrpc":"2.0","id":"x-1","method":"ping"}',
    b'{"jsonrpc":"2.0","id":2,"method":"ping","params":null}',
    b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
    b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":0.5}}',
    b'{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"h\\u00e9\\n"}]}}',
    b'{"jsonrpc":"2.0","id":"r","result":{}}',
    '{"jsonrpc":"2.0","id":4,"result":{"text":"√ ünïcode"}}'.encode(),
]

#: Lines the adapter reads (or refuses) itself: codec hands them over unchanged.
OTHER = [
    b'{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"Method not found"}}',
    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}',
    b'{"jsonrpc":"2.0","id":6,"method":"ping","extra":1}',
    b'{"jsonrpc":"2.0","id":7,"result":{},"extra":true}',
    b'{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":null,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":true,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
]

#: Lines that are no message: the adapter's ValidationError, as before.
REFUSED = [
    b"not json",
    b'{"jsonrpc":"2.0","id":1,"method":"ping"',
    b"[]",
    b'[{"jsonrpc":"2.0","method":"ping"}]',
    b'"text"',
    b'{"jsonrpc":"1.0","id":1,"method":"ping"}',
    b'{"id":1,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"method":7}',
    b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}',
    b'{"jsonrpc":"2.0","id":1,"result":[]}',
    b'{"jsonrpc":"2.0","id":1}',
    b"\xff\xfe",
]


def _same(read: JSONRPCMessage, expected: JSONRPCMessage) -> None:
    assert type(read) is type(expected)
    assert read.model_fields_set == expected.model_fields_set
    assert read.model_dump(exclude_unset=True) == expected.model_dump(exclude_unset=True)


@pytest.mark.parametrize("line", PLAIN + OTHER)
def test_decode_reads_what_the_adapter_reads(line: bytes) -> None:
    _same(codec.decode(line), jsonrpc_message_adapter.validate_json(line, by_name=False))


@pytest.mark.parametrize("line", PLAIN)
def test_plain_shapes_are_read_without_the_adapter(
    line: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Refusing:
        def validate_json(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the adapter was used")

    expected = jsonrpc_message_adapter.validate_json(line, by_name=False)
    monkeypatch.setattr(codec, "jsonrpc_message_adapter", Refusing())
    _same(codec.decode(line), expected)


@pytest.mark.parametrize("line", REFUSED)
def test_decode_refuses_what_the_adapter_refuses(line: bytes) -> None:
    with pytest.raises(ValidationError) as adapter:
        jsonrpc_message_adapter.validate_json(line, by_name=False)
    with pytest.raises(ValidationError) as read:
        codec.decode(line)
    assert read.value.errors() == adapter.value.errors()


class _Model(BaseModel):
    value: int


@pytest.mark.parametrize(
    "message",
    [
        JSONRPCRequest(jsonrpc="2.0", id=1, method="tools/call", params={"name": "a"}),
        JSONRPCRequest(jsonrpc="2.0", id="s", method="ping"),
        JSONRPCRequest(jsonrpc="2.0", id=2, method="ping", params=None),
        JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled"),
        JSONRPCResponse(jsonrpc="2.0", id=3, result={"text": '√ \n"q"', "n": [1.5, None]}),
        JSONRPCResponse(jsonrpc="2.0", id=4, result={"big": 2**70}),  # over 64 bits
        JSONRPCResponse(jsonrpc="2.0", id=5, result={"model": _Model(value=1)}),
        JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=-32600, message="no")),
        *(codec.decode(line) for line in PLAIN),
    ],
    ids=repr,
)
def test_encode_writes_the_bytes_pydantic_writes(message: JSONRPCMessage) -> None:
    expected = message.model_dump_json(by_alias=True, exclude_unset=True)
    assert codec.encode(message) == expected.encode() + b"\n"


@pytest.mark.parametrize(
    "value",
    [
        {"content": [{"type": "text", "text": '√ ünïcode \n"q"'}], "isError": False},
        [1, 2.5, None, True, "x"],
        {"big": 2**70},  # over 64 bits: pydantic's writer
        {1: "a non-string key"},  # pydantic's writer too
        _Model(value=3),
    ],
    ids=repr,
)
def test_dumps_writes_the_bytes_pydantic_core_writes(value: Any) -> None:
    assert codec.dumps(value) == pydantic_core.to_json(value)
