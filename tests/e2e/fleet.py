"""A fleet for end-to-end tests: a real Redis, real `mcp-agg serve` replicas and a real
HAProxy in front of them, run with deploy/haproxy.cfg as operators run it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.e2e.procs import REPO, free_port, kill_group, port_open, served_gateway, wait_until

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
    proc = subprocess.Popen(
        [
            _program("redis-server"),
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *(("--requirepass", password) if password else ()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 20, "redis-server")
        assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
        auth = f":{password}@" if password else ""
        yield RedisServer(f"redis://{auth}127.0.0.1:{port}/0", port, proc)
    finally:
        kill_group(proc)


@contextmanager
def haproxy(replica_ports: list[int], port: int | None = None) -> Iterator[str]:
    """HAProxy with deploy/haproxy.cfg in front of up to three replica ports: its /mcp
    URL once it listens. Missing replicas point at a port nothing listens on (down)."""
    assert 1 <= len(replica_ports) <= FLEET_SIZE
    port = port or free_port()
    ports = [*replica_ports, *(free_port() for _ in range(FLEET_SIZE - len(replica_ports)))]
    env = {
        **os.environ,
        "MCP_AGG_FLEET_BIND": f"127.0.0.1:{port}",
        **{f"MCP_AGG_REPLICA_{i}": f"127.0.0.1:{p}" for i, p in enumerate(ports, 1)},
    }
    proc = subprocess.Popen(
        [_program("haproxy"), "-db", "-f", str(HAPROXY_CFG)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 20, "haproxy")
        assert proc.poll() is None, f"haproxy exited with {proc.returncode}"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        kill_group(proc)


@dataclass
class Fleet:
    """Replicas of one config (and HAProxy in front of them): `url` is HAProxy's."""

    config: Path
    url: str
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    stack: ExitStack = field(repr=False)

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}/mcp"


@contextmanager
def fleet(
    config: Path,
    replicas: int = FLEET_SIZE,
    *,
    env: dict[str, str] | None = None,
    stderr: IO[bytes] | None = None,
) -> Iterator[Fleet]:
    """`replicas` gateways serving `config` over HTTP, each on a port of its own, and
    HAProxy in front of them; all killed on exit."""
    with ExitStack() as stack:
        ports = [free_port() for _ in range(replicas)]
        procs = []
        for port in ports:
            _, proc = stack.enter_context(served_gateway(config, port=port, env=env, stderr=stderr))
            procs.append(proc)
        url = stack.enter_context(haproxy(ports))
        yield Fleet(config, url, ports, procs, stack)
