"""A fleet for end-to-end tests: a real Redis, real `mcp-agg serve` replicas and a real
HAProxy in front of them, run with deploy/haproxy.cfg as operators run it; and `Load`,
calls through it at a bounded concurrency, counted by outcome."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import mcp_types
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.e2e.procs import REPO, free_port, listening, served_gateway

HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
#: Replicas in deploy/haproxy.cfg.
FLEET_SIZE = 3


def _program(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None
    )
    assert found, f"{name} is missing: .ci/run installs it (apt-get install {name})"
    return found


@dataclass
class RedisServer:
    url: str
    port: int
    proc: subprocess.Popen[bytes]


@contextmanager
def redis_server(port: int | None = None, *, password: str | None = None) -> Iterator[RedisServer]:
    """A throwaway redis-server on loopback (nothing saved to disk); killed on exit.
    With `password`, it requires it (`--requirepass`), and `url` carries it."""
    port = port or free_port()
    command = [
        _program("redis-server"),
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *(("--requirepass", password) if password else ()),
    ]
    with listening(command, port, timeout=20) as proc:
        auth = f":{password}@" if password else ""
        yield RedisServer(f"redis://{auth}127.0.0.1:{port}/0", port, proc)


@contextmanager
def haproxy(replica_ports: list[int], port: int | None = None) -> Iterator[str]:
    """HAProxy with deploy/haproxy.cfg in front of up to three replica ports: its /mcp
    URL once it listens. Missing replicas point at a port nothing listens on (down)."""
    assert 1 <= len(replica_ports) <= FLEET_SIZE
    port = port or free_port()
    ports = [*replica_ports, *(free_port() for _ in range(FLEET_SIZE - len(replica_ports)))]
    env = {
        "MCP_AGG_FLEET_BIND": f"127.0.0.1:{port}",
        **{f"MCP_AGG_REPLICA_{i}": f"127.0.0.1:{p}" for i, p in enumerate(ports, 1)},
    }
    with listening([_program("haproxy"), "-db", "-f", str(HAPROXY_CFG)], port, env=env, timeout=20):
        yield f"http://127.0.0.1:{port}/mcp"


#: Set in each replica's environment to its tag (`fleet`: its index), so that a config
#: can tell its backends which replica runs them (`"${MCP_AGG_FLEET_REPLICA}"`).
REPLICA_TAG = "MCP_AGG_FLEET_REPLICA"


@dataclass
class Fleet:
    """Replicas of one config (and HAProxy in front of them): `url` is HAProxy's."""

    config: Path
    url: str
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    stack: ExitStack = field(repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    stderr: IO[bytes] | None = field(default=None, repr=False)

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}/mcp"

    def restart(self, index: int, tag: str) -> subprocess.Popen[bytes]:
        """Start replica `index` again on its port (once the old one has exited), tagged
        `tag`, and return it once it is ready; killed with the fleet."""
        env = {**self.env, REPLICA_TAG: tag}
        port = self.ports[index]
        _, proc = self.stack.enter_context(
            served_gateway(self.config, port=port, env=env, stderr=self.stderr)
        )
        self.procs[index] = proc
        return proc


@contextmanager
def fleet(
    config: Path,
    replicas: int = FLEET_SIZE,
    *,
    env: dict[str, str] | None = None,
    stderr: IO[bytes] | None = None,
    proxy_port: int | None = None,
) -> Iterator[Fleet]:
    """`replicas` gateways serving `config` over HTTP, each on a port of its own (and
    tagged with its index, `REPLICA_TAG`), and HAProxy in front of them (on `proxy_port`
    if given: a config that names the fleet's public URL); all killed on exit."""
    with ExitStack() as stack:
        ports = [free_port() for _ in range(replicas)]
        procs = []
        for index, port in enumerate(ports):
            tagged = {**(env or {}), REPLICA_TAG: str(index)}
            _, proc = stack.enter_context(
                served_gateway(config, port=port, env=tagged, stderr=stderr)
            )
            procs.append(proc)
        url = stack.enter_context(haproxy(ports, proxy_port))
        yield Fleet(config, url, ports, procs, stack, dict(env or {}), stderr)


@dataclass
class Load:
    """`calls` calls of `tool` through `url`, at most `concurrency` at a time, started
    evenly over `spread` seconds (so that a fault the test injects meanwhile meets a
    steady flow, as a rolling restart does), each by a stateless 2026-07-28 client that
    carries its context in every request: any replica can serve any of them. With
    `sessions`, the calls go instead over that many handshake-era sessions opened once
    (the fleet needs a `session_secret`), each taking the next call when it is free:
    every session's requests land on every replica.

    Each call ends within `timeout`. `answers` counts the successful answers by their
    text (a backend tagged with its replica names who served), `failures` the rest by
    kind: the exception's type and the start of its message, or "tool error".
    """

    url: str
    tool: str
    arguments: dict[str, Any]
    calls: int = 300
    concurrency: int = 8
    spread: float = 10.0
    timeout: float = 20.0
    sessions: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    sent: int = field(default=0, init=False)

    @property
    def done(self) -> int:
        return sum(self.answers.values()) + sum(self.failures.values())

    @property
    def in_flight(self) -> int:
        return self.sent - self.done

    async def run(self) -> None:
        """Make every call; returns once each has an outcome."""
        async with AsyncExitStack() as sessions:
            free: list[Client[Any]] = []
            for _ in range(self.sessions):
                client = Client(self.url, mode="legacy", timeout=self.timeout)
                free.append(await sessions.enter_async_context(client))
            slots = anyio.Semaphore(self.sessions or self.concurrency)
            begun = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for index in range(self.calls):
                    await anyio.sleep_until(begun + index * self.spread / self.calls)
                    await slots.acquire()
                    self.sent += 1
                    tg.start_soon(self._one, slots, free)

    async def _one(self, slots: anyio.Semaphore, free: list[Client[Any]]) -> None:
        session = free.pop() if free else None
        try:
            with anyio.fail_after(self.timeout):
                async with AsyncExitStack() as stack:
                    client = session or await stack.enter_async_context(
                        Client(StreamableHttpTransport(self.url), timeout=self.timeout)
                    )
                    result = await client.call_tool_mcp(self.tool, self.arguments)
            if result.is_error:
                self.failures["tool error: " + _text(result)[:80]] += 1
            else:
                self.answers[_text(result)] += 1
        except Exception as exc:
            self.failures[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
        finally:
            if session is not None:
                free.append(session)
            slots.release()


def _text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))
