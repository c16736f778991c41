"""Hostile input on the HTTP front: a clean error every time, and everyone else still served.

A real `mcp-agg serve --transport http` (one stdio backend) gets hypothesis-generated
hostile POST bodies on an initialized session: invalid JSON, JSON that is not a request,
wrong `jsonrpc`/`id`/`method`/`params` types, unknown methods, `tools/call` with odd tool
names, deeply nested arguments, a body of a few MiB, batch arrays and odd headers. Each
must get an HTTP 4xx or a JSON-RPC error (a tool-level error result for `tools/call`),
never a 5xx, a hang or a dropped connection; after each example a good `tools/call` on a
second, untouched session must still succeed; and at the end the gateway is alive and
its stderr holds no traceback.

Examples are derandomized: the same inputs on every run, so a CI failure reproduces
locally and the run time is stable (the random search of tests/config/test_config_fuzz.py is
cheap; here every example is network round trips against a real process).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.e2e.procs import (
    ACCEPT,
    INITIALIZED,
    demo_servers,
    free_port,
    initialize_request,
    messages,
    served_gateway,
    session_headers,
)

pytestmark = pytest.mark.e2e

GOOD_TOOL = "units_add"
#: Methods the gateway serves; generated "unknown" methods avoid them.
KNOWN_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "subscriptions/listen",
    }
)

HOSTILE = settings(max_examples=25, deadline=None, derandomize=True, database=None)


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen[bytes]
    stderr: Path
    http: httpx.Client
    hostile: dict[str, str]  # headers of the session that gets the hostile input
    good: dict[str, str]  # headers of the session that must keep working


def open_session(http: httpx.Client, url: str) -> dict[str, str]:
    """Initialize a handshake-era session; return the headers that use it."""
    response = http.post(
        url,
        json=initialize_request("test_hostile_input"),
        headers={"Accept": ACCEPT, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    headers = session_headers(response.headers["mcp-session-id"])
    response = http.post(url, json=INITIALIZED, headers=headers)
    assert response.status_code == 202, response.text
    return headers


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("hostile")
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 30
{demo_servers(folder, "units")}"""
    )
    port = free_port()
    stderr = folder / "gateway.stderr"
    # The client's timeout: a hang is a failure, not a stuck run.
    with (
        stderr.open("wb") as err,
        served_gateway(config, port=port, stderr=err) as (url, proc),
        httpx.Client(timeout=httpx.Timeout(20)) as http,
    ):
        yield Gateway(url, proc, stderr, http, open_session(http, url), open_session(http, url))


# ---------------------------------------------------------------- checks


def is_error(message: Any, *, tool_error_ok: bool) -> bool:
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return False
    error = message.get("error")
    if isinstance(error, dict):
        return isinstance(error.get("code"), int) and isinstance(error.get("message"), str)
    result = message.get("result")
    return tool_error_ok and isinstance(result, dict) and result.get("isError") is True


def may_be_a_notification(body: Any) -> bool:
    """Whether the server may take this body as a message that gets no answer (202).

    A notification or a client's response has no `id` to answer; a request whose `id`
    is neither a string nor an integer is read by the SDK the same way (see the report
    in test_wrong_id_types).
    """
    if not isinstance(body, dict):
        return False
    request_id = body.get("id")
    return "id" not in body or isinstance(request_id, bool) or not isinstance(request_id, int | str)


def send(gw: Gateway, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    try:
        return gw.http.post(gw.url, content=body, headers=headers or gw.hostile)
    except httpx.TimeoutException as exc:
        raise AssertionError(f"no answer in time to {body[:200]!r}") from exc
    except httpx.TransportError as exc:
        raise AssertionError(f"connection failed on {body[:200]!r}: {exc!r}") from exc


def assert_clean(
    response: httpx.Response, body: bytes, *, tool_error_ok: bool = False, result_ok: bool = False
) -> None:
    """An HTTP 4xx, or a JSON-RPC error; a 202 only for what may be a notification."""
    shown = body[:300]
    assert response.status_code < 500, f"{response.status_code} for {shown!r}: {response.text}"
    if 400 <= response.status_code < 500:
        return
    if response.status_code == 202:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        assert may_be_a_notification(parsed), f"202 without an answer for {shown!r}"
        assert not response.content.strip(), response.text
        return
    assert response.status_code == 200, f"{response.status_code} for {shown!r}"
    found = messages(response)
    assert found, f"no message in the answer to {shown!r}"
    for message in found:
        if result_ok and isinstance(message, dict) and "result" in message:
            continue
        assert is_error(message, tool_error_ok=tool_error_ok), (
            f"not an error answer to {shown!r}: {message!r}"
        )


def assert_still_serving(gw: Gateway) -> None:
    """A good tools/call on the untouched session succeeds."""
    call = {
        "jsonrpc": "2.0",
        "id": 100,
        "method": "tools/call",
        "params": {"name": GOOD_TOOL, "arguments": {"a": 2, "b": 3}},
    }
    response = gw.http.post(gw.url, json=call, headers=gw.good)
    assert response.status_code == 200, response.text
    (message,) = messages(response)
    assert message["result"]["isError"] is False, message
    assert message["result"]["content"][0]["text"] == "5.0"


def request(method: Any = "ping", params: Any = None, request_id: Any = 7) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        out["params"] = params
    return out


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


# ---------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
not_a_string = json_values.filter(lambda v: not isinstance(v, str))
odd_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S", "Z", "C"]),
    max_size=60,
)


# ---------------------------------------------------------------- tests


@HOSTILE
@given(
    body=st.one_of(
        st.binary(max_size=200),
        odd_text.map(str.encode),
        # A good request, cut short or with garbage spliced in.
        st.integers(0, len(encode(request())) - 1).map(lambda n: encode(request())[:n]),
        st.tuples(st.integers(0, 40), st.binary(min_size=1, max_size=8)).map(
            lambda cut: encode(request())[: cut[0]] + cut[1] + encode(request())[cut[0] :]
        ),
    )
)
def test_malformed_bodies(gateway: Gateway, body: bytes) -> None:
    # Splicing in whitespace can leave a valid ping: answering it is fine too.
    assert_clean(send(gateway, body), body, result_ok=True)
    assert_still_serving(gateway)


@HOSTILE
@given(
    body=st.one_of(
        # JSON that is not an object: scalars, arrays, batches.
        json_values.filter(lambda v: not isinstance(v, dict)),
        st.lists(st.just(request()), min_size=1, max_size=3),
        st.lists(json_values, min_size=1, max_size=3),
        # Wrong `jsonrpc`, `method` or `params` types and values.
        st.builds(lambda v: {**request(), "jsonrpc": v}, json_values.filter(lambda v: v != "2.0")),
        st.builds(lambda v: request(method=v), not_a_string),
        st.builds(
            lambda m, p: request(m, p),
            st.sampled_from(["ping", "tools/list", "tools/call", "resources/read", "prompts/get"]),
            json_values.filter(lambda v: not isinstance(v, dict) and v is not None),
        ),
        # A request object with keys missing or extra.
        st.dictionaries(st.sampled_from(["jsonrpc", "id", "method", "params"]), json_values),
    )
)
def test_wrong_json_rpc_shapes(gateway: Gateway, body: Any) -> None:
    raw = encode(body)
    assert_clean(send(gateway, raw), raw)
    assert_still_serving(gateway)


@HOSTILE
@given(request_id=not_a_string.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)))
def test_wrong_id_types(gateway: Gateway, request_id: Any) -> None:
    """An `id` that is neither a string nor an integer: refused or ignored, never a crash.

    JSON-RPC would answer -32600 with `"id": null`; the MCP SDK instead reads such a
    message as a notification and answers 202 with nothing, which is allowed here.
    """
    raw = encode(request("tools/list", request_id=request_id))
    assert_clean(send(gateway, raw), raw)
    assert_still_serving(gateway)


@HOSTILE
@given(
    method=odd_text.filter(lambda m: m not in KNOWN_METHODS),
    params=st.none() | st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    notification=st.booleans(),
)
def test_unknown_methods(gateway: Gateway, method: str, params: Any, notification: bool) -> None:
    body = request(method, params)
    if notification:
        del body["id"]
    raw = encode(body)
    response = send(gateway, raw)
    assert_clean(response, raw)
    if response.status_code == 200:
        assert messages(response)[0]["error"]["code"] == -32601
    assert_still_serving(gateway)


@HOSTILE
@given(
    name=st.one_of(
        odd_text,
        st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp"])),
        st.integers(1_000, 200_000).map(lambda n: "x" * n),
        st.text(min_size=1, max_size=5).map(lambda s: GOOD_TOOL + s),
    ),
    arguments=st.none() | st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)
def test_odd_tool_names(gateway: Gateway, name: str, arguments: Any) -> None:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    raw = encode(request("tools/call", params))
    assert_clean(send(gateway, raw), raw, tool_error_ok=True)
    assert_still_serving(gateway)


@HOSTILE
@given(
    depth=st.sampled_from([1, 50, 150, 199, 200, 201, 255, 500, 1_000, 10_000, 100_000]),
    kind=st.sampled_from(["list", "object"]),
    where=st.sampled_from(["arguments", "value", "params"]),
)
def test_deeply_nested_payloads(gateway: Gateway, depth: int, kind: str, where: str) -> None:
    """Nesting is built as text: json.dumps itself would hit the recursion limit."""
    opener, closer = (b"[", b"]") if kind == "list" else (b'{"k":', b"}")
    nested = opener * depth + b"1" + closer * depth
    if where == "arguments":
        params = b'{"name":"' + GOOD_TOOL.encode() + b'","arguments":' + nested + b"}"
    elif where == "value":
        params = b'{"name":"' + GOOD_TOOL.encode() + b'","arguments":{"a":' + nested + b',"b":1}}'
    else:
        params = nested
    raw = b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":' + params + b"}"
    assert_clean(send(gateway, raw), raw, tool_error_ok=True)
    assert_still_serving(gateway)


@pytest.mark.parametrize("mib", [1, 3, 8])
def test_large_bodies(gateway: Gateway, mib: int) -> None:
    pad = "x" * (mib * 1024 * 1024)
    raw = encode(request("tools/call", {"name": GOOD_TOOL, "arguments": {"a": 1, "b": pad}}))
    assert_clean(send(gateway, raw), raw, tool_error_ok=True)
    assert_still_serving(gateway)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_max_message_bytes_is_refused_unread(gateway: Gateway, chunked: bool) -> None:
    """Over `[gateway] max_message_bytes` (16 MiB by default): 413 with a JSON-RPC error,
    whether the body says its length or comes in chunks (then it is read up to the
    limit only)."""
    response = send_padded(gateway, 17, chunked=chunked)
    assert response.status_code == 413, response.text[:300]
    error = response.json()
    assert error["id"] is None, error
    assert error["error"]["code"] == -32600, error
    assert "max_message_bytes" in error["error"]["message"], error
    assert_still_serving(gateway)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_under_max_message_bytes_is_served(gateway: Gateway, chunked: bool) -> None:
    """Under the limit, and over the MCP SDK's own 4 MiB: served (the argument is not a
    number, so the answer is the tool's error)."""
    response = send_padded(gateway, 6, chunked=chunked)
    assert response.status_code == 200, response.text[:300]
    (message,) = messages(response)
    assert message["result"]["isError"] is True, message
    assert_still_serving(gateway)


def send_padded(gateway: Gateway, mib: int, *, chunked: bool) -> httpx.Response:
    """A tools/call of about `mib` MiB, sent with its length or in 1 MiB chunks."""
    pad = "x" * (mib * 1024 * 1024)
    raw = encode(request("tools/call", {"name": GOOD_TOOL, "arguments": {"a": 1, "b": pad}}))
    pieces = [raw[i : i + 1024 * 1024] for i in range(0, len(raw), 1024 * 1024)]
    body: Any = iter(pieces) if chunked else raw
    return gateway.http.post(gateway.url, content=body, headers=gateway.hostile)


@settings(HOSTILE, max_examples=20)
@given(
    content_type=st.none()
    | st.sampled_from(["text/plain", "application/xml", "multipart/form-data", "", "*/*"])
    | odd_text.filter(lambda s: s.isascii() and s.isprintable()),
    accept=st.none()
    | st.sampled_from(["application/json", "text/event-stream", "text/html", "", "*/*"])
    | odd_text.filter(lambda s: s.isascii() and s.isprintable()),
)
def test_odd_headers(gateway: Gateway, content_type: str | None, accept: str | None) -> None:
    """A good ping with an odd Content-Type or Accept: refused with a 4xx, or answered."""
    headers = dict(gateway.hostile)
    for key, value in (("Content-Type", content_type), ("Accept", accept)):
        if value is None:
            del headers[key]
        else:
            headers[key] = value.strip()
    raw = encode(request())
    assert_clean(send(gateway, raw, headers), raw, result_ok=True)
    assert_still_serving(gateway)


def test_the_hostile_session_and_the_gateway_survive(gateway: Gateway) -> None:
    """Last: the hostile session still works, the process lives, stderr has no traceback."""
    response = gateway.http.post(gateway.url, json=request(), headers=gateway.hostile)
    assert response.status_code == 200, response.text
    assert messages(response) == [{"jsonrpc": "2.0", "id": 7, "result": {}}]
    assert_still_serving(gateway)
    assert gateway.proc.poll() is None, f"gateway exited with {gateway.proc.returncode}"
    log = gateway.stderr.read_text(errors="replace")
    assert "Traceback" not in log, log[-5000:]
    assert "Exception in ASGI application" not in log, log[-5000:]
