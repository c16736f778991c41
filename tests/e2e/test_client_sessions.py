"""Backend sessions and client context (docs/sessions.md), with real third-party servers.

- stdio front: `@modelcontextprotocol/server-filesystem`, started with no directories,
  learns the stdio client's roots from the gateway (asked when the backend initializes,
  before the client has connected, and again when the client's roots change);
  server-everything's log messages, sent outside any call, reach the client.
- HTTP front: two clients with different roots. On a `shared` server neither sees the
  other's root (a shared session gets no roots); on a `per_client` server each sees its
  own. A per-client session's log messages outside calls, and its resource updates, reach
  its client only.
- per-client sessions of a stdio backend are processes: one per client, closed when its
  client leaves (DELETE) or goes idle, and refused beyond `max_sessions`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.e2e.procs import (
    PYTHON,
    demo_servers,
    descendants,
    eventually,
    free_port,
    mcp_agg,
    node_server,
    pids_with_arg,
    served_gateway,
)

pytestmark = [pytest.mark.e2e, pytest.mark.npm]

FILESYSTEM = node_server("mcp-server-filesystem")
EVERYTHING = node_server("mcp-server-everything")
ADMIN_TOKEN = "sessions-admin-token"


def server_entry(name: str, command: list[str], **keys: Any) -> str:
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    return (
        f'\n[[servers]]\nname = "{name}"\ncommand = {json.dumps(command[0])}\n'
        f"args = {json.dumps(command[1:])}\n{extra}"
    )


def write_config(folder: Path, *entries: str) -> Path:
    config = folder / "servers.toml"
    config.write_text("[gateway]\nconnect_timeout = 30\nrequest_timeout = 30\n" + "".join(entries))
    return config


def text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


def folders(tmp_path: Path, *names: str) -> list[Path]:
    made = [tmp_path / name for name in names]
    for folder in made:
        folder.mkdir()
    return [folder.resolve() for folder in made]


class Logs:
    """A client's log handler: every log message it was sent, and when."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Any]] = []

    async def __call__(self, message: mcp_types.LoggingMessageNotificationParams) -> None:
        self.seen.append((time.monotonic(), message.data))

    def since(self, moment: float) -> list[Any]:
        return [data for at, data in self.seen if at > moment]


async def allowed(client: Client[Any], tool: str = "fs_list_allowed_directories") -> str:
    return text(await client.call_tool_mcp(tool, {}))


# ---------------------------------------------------------------------------- stdio front


async def test_stdio_client_roots_and_logs_reach_backends_outside_calls(tmp_path: Path) -> None:
    first, second = folders(tmp_path, "first", "second")
    config = write_config(
        tmp_path, server_entry("fs", FILESYSTEM), server_entry("everything", EVERYTHING)
    )
    logs = Logs()
    transport = StdioTransport(
        command=PYTHON, args=["-m", "mcp_agg", "serve", "-c", str(config)], keep_alive=False
    )
    # The client's roots as it answers them now (fastmcp's `set_roots` only changes the
    # roots of sessions it opens later).
    roots = [first.as_uri()]
    async with Client(
        transport, mode="legacy", roots=lambda _context: list(roots), log_handler=logs, timeout=30
    ) as client:
        # The backend asked for roots when it initialized, before this client was there.
        await eventually(
            lambda: _contains(client, str(first)), "server-filesystem to learn the client's root"
        )
        with warnings.catch_warnings():  # roots are a handshake-era feature
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            roots[:] = [second.as_uri()]
            changed = time.monotonic()
            await client.send_roots_list_changed()
        await eventually(
            lambda: _contains(client, str(second)), "server-filesystem to learn the new root"
        )
        # server-everything, told of the change outside any call, asks for the roots again
        # and logs what it got: the log message reaches the client.
        await eventually(
            lambda: [m for m in logs.since(changed) if "Roots updated" in str(m)],
            "server-everything's log message sent outside a call",
        )


async def _contains(client: Client[Any], folder: str) -> bool:
    return folder in (await allowed(client)).splitlines()


# ---------------------------------------------------------------------------- HTTP front


@pytest.fixture(scope="module")
def http_gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("sessions")
    config = write_config(
        folder,
        server_entry("shared", EVERYTHING),
        server_entry("own", EVERYTHING, session="per_client"),
        server_entry("fs", FILESYSTEM, session="per_client"),
    )
    with served_gateway(config) as (url, proc):
        yield url, proc


def http_client(url: str, root: Path, logs: Logs | None = None) -> Client[Any]:
    return Client(
        StreamableHttpTransport(url),
        mode="legacy",
        roots=[root.as_uri()],
        log_handler=logs,
        timeout=30,
    )


@pytest.fixture
async def two_clients(
    http_gateway: tuple[str, Any], tmp_path: Path
) -> AsyncIterator[tuple[Client[Any], Client[Any], Path, Path]]:
    url, _ = http_gateway
    alice_root, bob_root = folders(tmp_path, "alice-secret", "bob-secret")
    async with http_client(url, alice_root) as alice, http_client(url, bob_root) as bob:
        yield alice, bob, alice_root, bob_root


async def test_a_shared_session_gets_no_clients_roots(
    two_clients: tuple[Client[Any], Client[Any], Path, Path],
) -> None:
    alice, bob, alice_root, bob_root = two_clients
    for client in (alice, bob):
        shown = text(await client.call_tool_mcp("shared_get-roots-list", {}))
        assert "no roots are currently configured" in shown
        assert alice_root.as_uri() not in shown
        assert bob_root.as_uri() not in shown


async def test_a_per_client_session_gets_its_own_clients_roots_only(
    two_clients: tuple[Client[Any], Client[Any], Path, Path],
) -> None:
    alice, bob, alice_root, bob_root = two_clients
    for client, own, other in ((alice, alice_root, bob_root), (bob, bob_root, alice_root)):
        shown = await eventually(
            lambda c=client, o=own: _roots_shown(c, o), "the backend to learn the client's root"
        )
        assert other.as_uri() not in shown
        fs = await eventually(
            lambda c=client, o=own: _contains(c, str(o)), "server-filesystem to learn the root"
        )
        assert fs
        assert str(other) not in await allowed(client)


async def _roots_shown(client: Client[Any], root: Path) -> str | None:
    shown = text(await client.call_tool_mcp("own_get-roots-list", {}))
    return shown if root.as_uri() in shown else None


async def test_per_client_log_messages_outside_calls_reach_their_client_only(
    http_gateway: tuple[str, Any], tmp_path: Path
) -> None:
    url, _ = http_gateway
    (root,) = folders(tmp_path, "root")
    mine, theirs = Logs(), Logs()
    async with http_client(url, root, mine) as me, http_client(url, root, theirs) as other:
        await other.call_tool_mcp("own_echo", {"message": "a session of its own"})
        await me.call_tool_mcp("own_toggle-simulated-logging", {})
        returned = time.monotonic()
        await eventually(
            lambda: simulated(mine.since(returned)), "a log message outside a call", 20
        )
        assert simulated([data for _, data in theirs.seen]) == []


class Updates(MessageHandler):
    """A client's `notifications/resources/updated`, by URI."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    async def on_resource_updated(self, message: mcp_types.ResourceUpdatedNotification) -> None:
        self.uris.append(str(message.params.uri))


async def test_per_client_resource_updates_reach_their_client_only(
    http_gateway: tuple[str, Any],
) -> None:
    url, _ = http_gateway
    mine, theirs = Updates(), Updates()
    async with (
        Client(url, mode="legacy", message_handler=mine, timeout=30) as me,
        Client(url, mode="legacy", message_handler=theirs, timeout=30) as other,
    ):
        uri = next(str(r.uri) for r in await me.list_resources() if "://own/" in str(r.uri))
        with warnings.catch_warnings():  # subscriptions are a handshake-era feature
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            for client in (me, other):
                await client.session.subscribe_resource(uri)
        # My backend session sends updates of what I subscribed to; the other client's
        # session, subscribed to the same URI, sends none.
        await me.call_tool_mcp("own_toggle-subscriber-updates", {})
        await eventually(lambda: uri in mine.uris, "my resource update")
        await other.call_tool_mcp("own_echo", {"message": "anything for me?"})
        assert theirs.uris == []


def simulated(logs: list[Any]) -> list[Any]:
    """server-everything's simulated log messages ("Info-level message", ...) among `logs`."""
    return [data for data in logs if re.search(r"level[- ]message", str(data))]


# ---------------------------------------------------------------------------- life cycle


async def echoes(client: Client[Any], server: str = "pc") -> bool:
    return not (await client.call_tool_mcp(f"{server}_echo", {"message": "again"})).is_error


def tagged(tag: str) -> list[str]:
    """server-everything with a tag on its command line (it reads only its first argument),
    so that the test can tell one server's processes from another's."""
    return [*EVERYTHING, "stdio", f"tag-{tag}"]


def sessions_of(base: str, server: str) -> int:
    done = mcp_agg("status", "--url", base, "--token", ADMIN_TOKEN, "--json")
    assert done.returncode == 0, done.stderr
    return sum(r["sessions"] for r in json.loads(done.stdout) if r["server"] == server)


async def test_per_client_sessions_end_with_their_client_idle_time_and_limit(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        f'\n[gateway.admin]\ntoken = "{ADMIN_TOKEN}"\n',
        server_entry("pc", tagged("pc"), session="per_client"),
        server_entry("idle", tagged("idle"), session="per_client", session_idle_timeout=1),
        server_entry("one", EVERYTHING, session="per_client", max_sessions=1),
    )
    with served_gateway(config) as (url, proc):
        base = url.removesuffix("/mcp")

        def processes(tag: str) -> set[int]:
            return descendants(proc.pid) & pids_with_arg(f"tag-{tag}")

        await eventually(lambda: len(processes("pc")) == 1, "the replica's own session")
        shared = processes("pc")

        def per_client() -> set[int]:
            return processes("pc") - shared

        async with Client(url, mode="legacy", timeout=30) as alice:
            async with Client(url, mode="legacy", timeout=30) as bob:
                for client in (alice, bob):
                    assert await echoes(client)
                assert len(per_client()) == 2
                assert sessions_of(base, "pc") == 2
                bobs = per_client()
            # Bob has left (his session was DELETEd): his backend process is gone.
            assert await echoes(alice)
            await eventually(lambda: len(per_client()) == 1, "bob's backend process to end")
            assert per_client() < bobs
            assert sessions_of(base, "pc") == 1
            # Her backend dies: her next request gets a new one (what it kept is lost).
            (dead,) = per_client()
            os.kill(dead, signal.SIGKILL)
            await eventually(lambda: echoes(alice), "a new session after the backend died")
            assert len(per_client()) == 1
            assert dead not in per_client()
            # A session without requests for session_idle_timeout is closed.
            idle_shared = processes("idle")
            assert await echoes(alice, "idle")
            assert len(processes("idle") - idle_shared) == 1
            await eventually(lambda: processes("idle") == idle_shared, "the idle session to end")
            # max_sessions = 1: a second client is refused while the first holds it.
            assert await echoes(alice, "one")
            async with Client(url, mode="legacy", timeout=30) as carol:
                refused = await carol.call_tool_mcp("one_echo", {"message": "second"})
                assert refused.is_error
                assert "max_sessions (1)" in text(refused)
                assert "'one'" in text(refused)


async def test_a_modern_era_client_is_keyed_by_its_identity(tmp_path: Path) -> None:
    """A modern-era client has no session: with `[gateway.auth]` its identity gets one
    backend session, whichever of its requests (and connections) come."""
    config = write_config(
        tmp_path,
        '\n[gateway.roles.all]\nallow = ["*"]\n\n[gateway.auth]\ntype = "bearer"\n'
        + "".join(
            f'\n[[gateway.auth.tokens]]\ntoken = "token-{who}"\nclient_id = "{who}"\n'
            'roles = ["all"]\n'
            for who in ("alice", "bob")
        ),
        server_entry("pc", tagged("pc"), session="per_client"),
    )
    with served_gateway(config) as (url, proc):

        def per_client() -> set[int]:
            return descendants(proc.pid) & pids_with_arg("tag-pc")

        await eventually(lambda: len(per_client()) == 1, "the replica's own session")
        for who in ("alice", "bob", "alice"):
            headers = {"Authorization": f"Bearer token-{who}"}
            async with Client(StreamableHttpTransport(url, headers=headers), timeout=30) as c:
                assert c.protocol_version == "2026-07-28"
                assert await echoes(c)
        assert len(per_client()) == 3  # the replica's own, alice's and bob's


async def test_a_launched_http_backend_serves_each_client_on_its_one_process(
    tmp_path: Path,
) -> None:
    """`command` and `url`: the replica starts the process once; each client gets an HTTP
    session of its own on it, not a process."""
    log = tmp_path / "gateway.log"
    config = write_config(
        tmp_path,
        demo_servers(tmp_path, "clock", clock_port=free_port(), clock='session = "per_client"'),
    )
    with log.open("wb") as stderr, served_gateway(config, stderr=stderr) as (url, proc):
        async with (
            Client(url, mode="legacy", timeout=30) as alice,
            Client(url, mode="legacy", timeout=30) as bob,
        ):
            for client in (alice, bob):
                echoed = await client.call_tool_mcp("clock_echo", {"text": "hi"})
                assert not echoed.is_error
            await eventually(
                lambda: log.read_text().count("clock-1: opened a session for a client") == 2,
                "a session for each client",
            )
            assert len(descendants(proc.pid) & pids_with_arg("clock.py")) == 1
