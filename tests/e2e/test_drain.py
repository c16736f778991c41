"""SIGTERM drains: calls in flight finish, then the gateway exits; nothing is cut off.

A real `mcp-agg serve` in front of `backends/answers.py`, whose `ask` takes as long as
the test says and logs when a call starts, ends and is cancelled. On both fronts, with
a call in flight: a stop signal (or stdin closing, on stdio) lets it finish and answers
it in full, refuses new requests meanwhile, and the process exits once it is answered;
a call that outlasts `shutdown_grace` is cancelled (the backend sees it) and answered
with a complete JSON-RPC error, never a truncated body or silence.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.procs import (
    BACKENDS,
    eventually,
    messages,
    open_session,
    post_initialize,
    served_gateway,
    stdio_gateway,
    wait_until,
)

pytestmark = pytest.mark.e2e

SHUTTING_DOWN = -32000


@dataclass
class Backend:
    """The answers backend's call log and the gateway's config around it."""

    config: Path
    log: Path
    stderr: Path

    def seen(self, event: str) -> int:
        lines = self.log.read_text().split("\n") if self.log.exists() else []
        return sum(1 for line in lines if line.endswith(f" {event}"))

    def gateway_said(self, text: str) -> bool:
        return text in self.stderr.read_text(errors="replace")


def answers_backend(folder: Path, delay: float, gateway: str = "") -> Backend:
    log, stderr = folder / "answers.log", folder / "gateway.stderr"
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 120
{gateway}

[[servers]]
name = "answers"
command = "python"
args = ["{BACKENDS / "answers.py"}", "--delay", "{delay}", "--log-file", "{log}"]
"""
    )
    return Backend(config, log, stderr)


def ask(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "answers_ask", "arguments": {"question": "how long?"}},
    }


# ---------------------------------------------------------------- the HTTP front


@dataclass
class Http:
    url: str
    proc: subprocess.Popen[bytes]
    backend: Backend


@pytest.fixture
def http_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Http]:
    delay, gateway = request.param
    backend = answers_backend(tmp_path, delay, gateway)
    with (
        backend.stderr.open("wb") as err,
        served_gateway(backend.config, stderr=err) as (url, proc),
    ):
        yield Http(url, proc, backend)


async def call_then_sigterm(gw: Http) -> tuple[list[Any], list[Any]]:
    """A call in flight, SIGTERM a second after it started, then a new session's
    initialize: both answers (each read to the end of its body)."""
    answers: dict[str, list[Any]] = {}
    async with httpx.AsyncClient(timeout=60) as http:
        headers = await open_session(http, gw.url, "test_drain")

        async def call() -> None:
            # A truncated body raises here (httpx.RemoteProtocolError) and fails the test.
            response = await http.post(gw.url, json=ask(7), headers=headers)
            assert response.status_code == 200, response.text
            answers["call"] = messages(response)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await eventually(lambda: gw.backend.seen("start"), "the backend to start the call")
            await anyio.sleep(1)  # the call is well under way
            gw.proc.send_signal(signal.SIGTERM)
            await eventually(
                lambda: gw.backend.gateway_said("refusing new requests"), "the refusals"
            )
            response = await post_initialize(http, gw.url, client="too-late")
            assert response.status_code == 200, response.text
            answers["initialize"] = messages(response)
    return answers["call"], answers["initialize"]


@pytest.mark.parametrize("http_gateway", [(5, "")], indirect=True)
async def test_sigterm_lets_an_http_call_in_flight_finish(http_gateway: Http) -> None:
    call, initialize = await call_then_sigterm(http_gateway)
    (answer,) = call
    assert answer["id"] == 7, answer
    assert answer["result"]["content"][0]["text"] == "42", answer
    # The new session was refused while the gateway drained.
    assert [m["error"]["code"] for m in initialize] == [SHUTTING_DOWN], initialize
    assert http_gateway.proc.wait(timeout=20) == 0
    assert http_gateway.backend.seen("done") == 1


@pytest.mark.parametrize("http_gateway", [(60, "shutdown_grace = 1")], indirect=True)
async def test_an_http_call_beyond_shutdown_grace_gets_a_complete_error(
    http_gateway: Http,
) -> None:
    call, _ = await call_then_sigterm(http_gateway)
    (answer,) = call
    assert answer["id"] == 7, answer
    assert answer["error"]["code"] == SHUTTING_DOWN, answer
    assert "shutdown_grace" in answer["error"]["message"], answer
    assert http_gateway.proc.wait(timeout=20) == 0
    assert http_gateway.backend.seen("cancelled") == 1, "the backend call was not cancelled"


@pytest.mark.parametrize("http_gateway", [(0, "")], indirect=True)
async def test_an_open_get_stream_ends_cleanly_on_sigterm(http_gateway: Http) -> None:
    """A session's GET stream (open until someone ends it) gets its closing chunk: a
    clean end the client can tell from a cut connection."""
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, http_gateway.url, "test_drain")
        stream_headers = {**headers, "Accept": "text/event-stream"}
        async with http.stream("GET", http_gateway.url, headers=stream_headers) as stream:
            assert stream.status_code == 200
            http_gateway.proc.send_signal(signal.SIGTERM)
            # A cut-off body raises httpx.RemoteProtocolError here.
            async for _ in stream.aiter_bytes():
                pass
    assert http_gateway.proc.wait(timeout=20) == 0


@pytest.mark.parametrize("http_gateway", [(60, "")], indirect=True)
async def test_a_second_sigterm_cancels_the_calls_in_flight_at_once(http_gateway: Http) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        headers = await open_session(http, http_gateway.url, "test_drain")
        async with anyio.create_task_group() as tg:

            async def sigterm_twice() -> None:
                await eventually(lambda: http_gateway.backend.seen("start"), "the call")
                http_gateway.proc.send_signal(signal.SIGTERM)
                await eventually(
                    lambda: http_gateway.backend.gateway_said("refusing new requests"),
                    "the refusals",
                )
                http_gateway.proc.send_signal(signal.SIGTERM)

            tg.start_soon(sigterm_twice)
            with anyio.fail_after(15):  # well before the default shutdown_grace (25 s)
                response = await http.post(http_gateway.url, json=ask(7), headers=headers)
    (answer,) = messages(response)
    assert answer["error"]["code"] == SHUTTING_DOWN, answer
    assert http_gateway.proc.wait(timeout=20) == 0


# ---------------------------------------------------------------- the stdio front


@pytest.mark.parametrize("how", ["stdin-eof", "SIGTERM", "SIGINT"])
def test_a_stdio_call_in_flight_finishes_before_the_gateway_exits(tmp_path: Path, how: str) -> None:
    backend = answers_backend(tmp_path, 4)
    with backend.stderr.open("wb") as err, stdio_gateway(backend.config, stderr=err) as peer:
        peer.initialize("test_drain")
        peer.send(ask(7))
        wait_until(lambda: backend.seen("start") > 0, 15, "the backend to start the call")
        if how == "stdin-eof":
            peer.close_stdin()
        else:
            peer.proc.send_signal(getattr(signal, how))
            wait_until(lambda: backend.gateway_said("refusing new requests"), 15, "the refusals")
            # Still reading: a new request is refused at once, the call carries on.
            refused = peer.request("ping", {}, 8, timeout=5)
            assert refused["error"]["code"] == SHUTTING_DOWN, refused
        answer = peer.answer(7, timeout=20)
        assert answer["result"]["content"][0]["text"] == "42", answer
        assert peer.ended(timeout=20), "the gateway kept stdout open"
        assert peer.proc.wait(timeout=20) == 0


def test_a_stdio_call_beyond_shutdown_grace_gets_an_error(tmp_path: Path) -> None:
    backend = answers_backend(tmp_path, 60, "shutdown_grace = 1")
    with backend.stderr.open("wb") as err, stdio_gateway(backend.config, stderr=err) as peer:
        peer.initialize("test_drain")
        peer.send(ask(7))
        wait_until(lambda: backend.seen("start") > 0, 15, "the backend to start the call")
        peer.proc.send_signal(signal.SIGTERM)
        answer = peer.answer(7, timeout=10)
        assert answer["error"]["code"] == SHUTTING_DOWN, answer
        assert "shutdown_grace" in answer["error"]["message"], answer
        assert peer.ended(timeout=20), "the gateway kept stdout open"
        assert peer.proc.wait(timeout=20) == 0
        wait_until(lambda: backend.seen("cancelled") > 0, 10, "the backend to see the cancel")
