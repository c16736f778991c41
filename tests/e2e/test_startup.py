"""How a real `mcp-agg` starts: its stdio backends before its imports, an HTTP backend's
four lists asked for at once (a stdio backend's one after another), the handshake answered
on either front before the backends are up.

The tests read logs, not a clock: the gateway's own (the order of its lines), and the
backends' (backends/slowlists.py holds each list request until all four are in flight and
logs whether they met; backends/answers.py logs the pid that answered a call).
"""

from __future__ import annotations

import http.client
import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import (
    ACCEPT,
    BACKENDS,
    HANDSHAKE,
    INITIALIZED,
    PYTHON,
    free_port,
    initialize_params,
    initialize_request,
    listening,
    mcp_agg,
    probe,
    stdio_gateway,
)

pytestmark = pytest.mark.e2e

LISTS = ["prompts/list", "resources/list", "resources/templates/list", "tools/list"]


def _lists_logged(transport: str, wait: float, tmp_path: Path) -> list[str]:
    """What backends/slowlists.py, served over `transport`, logged while `mcp-agg tools`
    listed it."""
    log = tmp_path / "lists.log"
    config = tmp_path / "servers.toml"
    args = [str(BACKENDS / "slowlists.py"), "--log-file", str(log), "--wait", str(wait)]
    url = ""
    if transport == "http":
        port = free_port()
        args += ["--port", str(port)]
        url = f'url = "http://127.0.0.1:{port}/mcp"\n'
    config.write_text(
        f'[gateway]\nconnect_timeout = 60\n\n[[servers]]\nname = "slow"\n'
        f'command = "{PYTHON}"\nargs = {json.dumps(args)}\n{url}'
    )
    done = mcp_agg("tools", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert [row["name"] for row in json.loads(done.stdout)] == ["slow_echo"]
    return log.read_text().splitlines()


def test_an_http_backends_four_lists_are_fetched_at_once(tmp_path: Path) -> None:
    # The round trips to a backend across a network overlap (backend/listing.py).
    events = _lists_logged("http", 10, tmp_path)
    assert sorted(events[:4]) == [f"start {m}" for m in LISTS]
    # Every list was in flight with the other three (one after another: `alone`, and
    # each of them 10 s late).
    assert sorted(events[4:]) == [f"met {m}" for m in LISTS]


def test_a_stdio_backends_four_lists_are_fetched_one_after_another(tmp_path: Path) -> None:
    # A local backend answers one at a time anyway, and each request in flight costs the
    # gateway memory (backend/listing.py): each list is asked once the one before is in.
    events = _lists_logged("stdio", 0.2, tmp_path)
    asked = [e.removeprefix("start ") for e in events[::2]]
    assert sorted(asked) == LISTS
    assert [e.split(" ", 1)[1] for e in events[1::2]] == asked


def test_a_stdio_backend_starts_before_the_gateway_imports_and_serves_its_first_session(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.log"
    config = tmp_path / "servers.toml"
    argv = json.dumps([str(BACKENDS / "answers.py"), "--log-file", str(calls)])
    config.write_text(f'[[servers]]\nname = "answers"\ncommand = "{PYTHON}"\nargs = {argv}\n')
    with (tmp_path / "gateway.log").open("w+b") as stderr:
        with stdio_gateway(config, "--log-level", "info", stderr=stderr) as peer:
            peer.initialize()
            answer = peer.request(
                "tools/call", {"name": "answers_ask", "arguments": {"question": "?"}}, 1
            )
            assert answer["result"]["content"][0]["text"] == "42"
        stderr.seek(0)
        log = stderr.read().decode()
    answered_by = calls.read_text().split()[0]  # "PID start"
    started = re.search(
        r"backend answers-1: started before the gateway's imports \(pid (\d+)\)", log
    )
    assert started is not None, log
    # Started before the MCP stack was imported, and the very process that answered: the
    # first session took it over rather than spawning another.
    assert started.start() < log.index("imported the gateway in ")
    assert started.group(1) == answered_by


def gated_config(folder: Path) -> tuple[Path, Path]:
    """A gateway with one backend that starts only once the test creates the gate file
    (returned second): until then nothing the gateway answers can have come from it."""
    gate = folder / "gate"
    script = (
        f'while [ ! -e "{gate}" ]; do sleep 0.05; done; exec "{PYTHON}" "{BACKENDS}/answers.py"'
    )
    config = folder / "servers.toml"
    config.write_text(
        f'[gateway]\nconnect_timeout = 60\n\n[[servers]]\nname = "late"\ncommand = "sh"\n'
        f"args = {json.dumps(['-c', script])}\n"
    )
    return config, gate


def test_initialize_is_answered_while_a_backend_starts_and_the_first_list_waits_for_it(
    tmp_path: Path,
) -> None:
    config, gate = gated_config(tmp_path)
    with stdio_gateway(config) as peer:
        assert peer.initialize()["serverInfo"]["name"]
        assert peer.request("ping", {}, 1) == {"jsonrpc": "2.0", "id": 1, "result": {}}
        peer.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
        gate.touch()
        tools = peer.answer(2, timeout=60)["result"]["tools"]
        assert [tool["name"] for tool in tools] == ["late_ask"]


MODERN = "2026-07-28"
#: What a raw 2026-07-28 client puts in every request's `_meta`.
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "e2e-test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def handshake_at(version: str) -> dict[str, Any]:
    """The first request of a raw client at `version`: `initialize`, or `server/discover`
    in the 2026-07-28 era."""
    if version == MODERN:
        params: dict[str, Any] = {"_meta": MODERN_META}
        return {"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": params}
    params = {**initialize_params("e2e-test"), "protocolVersion": version}
    return {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}


@pytest.mark.parametrize("version", ["2024-11-05", "2025-06-18", HANDSHAKE, "1999-01-01", MODERN])
def test_the_handshake_is_answered_before_the_mcp_stack_is_imported_as_its_sdk_answers_it(
    tmp_path: Path, version: str
) -> None:
    """Answered from `serve`'s first moments (front/earlyinit.py), before the gateway has
    imported what answered it until now; the SDK still answers it too, and the gateway
    checks that answer against the one given (in its log) before dropping it. The
    session goes on as usual: the first list waits for the backend."""
    config, gate = gated_config(tmp_path)
    meta = {"_meta": MODERN_META} if version == MODERN else {}
    with (tmp_path / "gateway.log").open("w+b") as stderr:
        with stdio_gateway(config, "--log-level", "debug", stderr=stderr) as peer:
            peer.send(handshake_at(version))
            assert "result" in peer.answer(0, timeout=60)
            if version != MODERN:
                peer.send(INITIALIZED)
            peer.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": meta})
            gate.touch()
            # Everything up to the list's answer: the SDK's answer to the handshake,
            # were it written, would come before it.
            received = [peer.receive(timeout=60)]
            while received[-1].get("id") != 1:
                received.append(peer.receive(timeout=60))
            tools = received[-1]["result"]["tools"]
            assert [tool["name"] for tool in tools] == ["late_ask"]
            assert not [m for m in received if m.get("id") == 0]
        stderr.seek(0)
        log = stderr.read().decode()
    assert log.index("answered the handshake (0) before") < log.index("imported the gateway in ")
    assert "the SDK's answer to the handshake is the one given early" in log
    assert "differs" not in log


def test_a_first_request_that_is_no_handshake_is_left_to_the_sdk(tmp_path: Path) -> None:
    config, _gate = gated_config(tmp_path)
    with (tmp_path / "gateway.log").open("w+b") as stderr:
        with stdio_gateway(config, "--log-level", "debug", stderr=stderr) as peer:
            assert peer.request("ping", {}, 5) == {"jsonrpc": "2.0", "id": 5, "result": {}}
            assert peer.initialize()["serverInfo"]["name"] == "mcp-agg"
        stderr.seek(0)
        log = stderr.read().decode()
    assert "answered the handshake" not in log


def post(conn: http.client.HTTPConnection, message: dict[str, Any], **headers: str) -> None:
    """Send one POST to /mcp on `conn`: once this returns, the gateway's socket has it."""
    body = json.dumps(message).encode()
    conn.request(
        "POST", "/mcp", body, {"Accept": ACCEPT, "Content-Type": "application/json", **headers}
    )


def answer(conn: http.client.HTTPConnection) -> tuple[http.client.HTTPResponse, Any]:
    """The response to the last POST on `conn`, and its JSON-RPC message (JSON or SSE)."""
    response = conn.getresponse()
    body = response.read().decode()
    if response.getheader("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in body.splitlines() if line.startswith("data:")]
        body = next(item for item in data if item.strip())
    return response, json.loads(body) if body else None


@pytest.mark.parametrize("era", [HANDSHAKE, MODERN])
def test_over_http_the_handshake_is_answered_while_starting_and_the_first_list_waits(
    tmp_path: Path, era: str
) -> None:
    """`/readyz` says 503 until the backend is up (a balancer keeps the replica out), but
    the handshake is answered at once, and a list sent before the backend starts is held
    until it has, then answered from the complete catalog."""
    config, gate = gated_config(tmp_path)
    port = free_port()
    serve = [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config), "--transport", "http"]
    with listening([*serve, "--port", str(port)], port, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"MCP-Protocol-Version": era}
        if era == HANDSHAKE:
            post(conn, initialize_request("e2e-test"))
            response, message = answer(conn)
            assert message["result"]["serverInfo"]["name"]
            headers["Mcp-Session-Id"] = response.getheader("mcp-session-id") or ""
            post(conn, INITIALIZED, **headers)
            assert answer(conn)[0].status == 202
            params: dict[str, Any] = {}
        else:
            params = {"_meta": MODERN_META}
            discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": params}
            post(conn, discover, **headers, **{"Mcp-Method": "server/discover"})
            assert MODERN in answer(conn)[1]["result"]["supportedVersions"]
            headers["Mcp-Method"] = "tools/list"
        assert probe(port) == 503
        post(conn, {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": params}, **headers)
        assert probe(port) == 503
        gate.touch()
        response, message = answer(conn)
        assert response.status == 200
        assert [tool["name"] for tool in message["result"]["tools"]] == ["late_ask"]
        assert probe(port) == 200
        conn.close()


def test_over_http_a_request_held_while_starting_is_refused_when_the_gateway_stops(
    tmp_path: Path,
) -> None:
    """A stop while starting stops at once, and what was held gets an error, not a hang."""
    config, _ = gated_config(tmp_path)  # the backend never starts
    port = free_port()
    serve = [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config), "--transport", "http"]
    with listening([*serve, "--port", str(port)], port, timeout=60) as proc:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        post(conn, initialize_request("e2e-test"))
        response, _ = answer(conn)
        headers = {"MCP-Protocol-Version": HANDSHAKE}
        headers["Mcp-Session-Id"] = response.getheader("mcp-session-id") or ""
        post(conn, {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}, **headers)
        proc.send_signal(signal.SIGTERM)
        response, message = answer(conn)
        assert response.status == 503
        assert message["error"] == {"code": -32000, "message": "mcp-agg stopped before it started"}
        proc.wait(timeout=10)
        conn.close()
