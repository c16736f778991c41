"""Processes and client sessions for the benchmark: every path opened alike, every process reaped.

A "front" is what a bench client talks to: the backend itself (direct, over stdio or
HTTP), an mcp-agg gateway over stdio or HTTP, or one of FastMCP's proxies. Every process
the bench starts leads its own process group; the bench is a child subreaper, so a backend
orphaned by a dying gateway is re-parented to the bench instead of init and is still found
and killed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx2
import mcp_types
from fastmcp import Client
from fastmcp.client.transports import ClientTransport, StdioTransport
from fastmcp.client.transports.base import SessionKwargs, TransportOptions
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from typing_extensions import Unpack

__all__ = [
    "BACKEND",
    "BENCH",
    "HTTP_PATHS",
    "MAGG_PATHS",
    "PATHS",
    "BenchError",
    "Env",
    "Front",
    "Reaper",
    "Session",
    "cpu_seconds",
    "open_front",
    "peak_rss_mib",
    "wait_ready",
]

BENCH = Path(__file__).resolve().parent
BACKEND = BENCH / "backend.py"
PROXY = BENCH / "fastmcp_proxy.py"
#: The backend's tools; through a gateway they are `b1_echo`, ...
TOOLS = ("echo", "add", "sleep_ms", "blob", "lookup")
#: The tool a gateway started with `cache=True` answers from its cache (docs/caching.md).
CACHED_TOOL = "lookup"

#: Path key → the column title in the tables.
PATHS: dict[str, str] = {
    "direct": "direct",
    "agg-stdio": "mcp-agg stdio",
    "agg-http": "mcp-agg http",
    "fastmcp-mounted": "fastmcp proxy (mounted)",
    "fastmcp-mcpservers": "fastmcp proxy (mcpServers)",
    "direct-http": "direct http",
    "fastmcp-mounted-http": "fastmcp proxy (mounted) http",
    "magg": "magg",
    "magg-http": "magg http",
}
#: The paths a client reaches over streamable HTTP (each its own process on a free port).
HTTP_PATHS = ("direct-http", "agg-http", "fastmcp-mounted-http", "magg-http")
#: magg's paths: run by its own `magg` program, installed apart (`make bench-magg`).
MAGG_PATHS = ("magg", "magg-http")

#: Writes its own pid (the one that `exec` keeps) to $0, then becomes the real command:
#: the SDK's stdio client does not say which pid it spawned.
_PIDFILE_SHIM = 'echo $$ > "$0" && exec "$@"'
_PR_SET_CHILD_SUBREAPER = 36
#: Seconds any one request (or connect) may take: 20 backends starting at once on two
#: cores take a while, and FastMCP's mcpServers proxy starts all of them per request.
REQUEST_TIMEOUT = 600.0
#: Seconds a front gets to stop by itself before its process groups are killed.
STOP_GRACE = 15.0


class BenchError(RuntimeError):
    """A path did not do what the workload needs (failed call, missing tool, dead process)."""


# ---------------------------------------------------------------------------- processes


@dataclass(frozen=True, slots=True)
class _Proc:
    pid: int
    ppid: int
    pgid: int
    zombie: bool


def _process_table() -> dict[int, _Proc]:
    table: dict[int, _Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        table[pid] = _Proc(pid, int(fields[1]), int(fields[2]), fields[0] == "Z")
    return table


def _descendants(root: int, table: dict[int, _Proc]) -> list[_Proc]:
    children: dict[int, list[_Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[_Proc] = []
    frontier = [root]
    while frontier:
        below = [child for pid in frontier for child in children.get(pid, [])]
        found.extend(below)
        frontier = [proc.pid for proc in below]
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time one process has used so far (/proc/PID/stat), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the command.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set size) of one process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


class Reaper:
    """Ends every process group the bench started, and anything left below the bench."""

    def __init__(self) -> None:
        self.me = os.getpid()
        self._own_group = os.getpgid(0)
        #: Our direct children; their exit status belongs to whoever spawned them.
        self._spawned: set[int] = set()
        #: front pid → every process group seen below it while it ran.
        self._groups: dict[int, set[int]] = {}
        libc = ctypes.CDLL(None, use_errno=True)
        self.subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0

    def spawned(self, pid: int) -> None:
        """Record a process the bench started (in its own session, so pgid == pid)."""
        self._spawned.add(pid)
        self._groups.setdefault(pid, {pid})

    def note_tree(self, pid: int) -> None:
        """Remember the process groups below a front now, while they can still be seen."""
        groups = self._groups.setdefault(pid, {pid})
        groups.update(proc.pgid for proc in _descendants(pid, _process_table()))

    def end(self, pid: int) -> int:
        """SIGKILL the groups of a front and of everything below it; return how many were live."""
        self.note_tree(pid)
        return self._kill(self._groups.pop(pid, {pid}))

    def sweep(self) -> int:
        """Kill whatever is still alive below the bench; return how many processes that was."""
        groups = set().union(*self._groups.values()) if self._groups else set()
        self._groups.clear()
        return self._kill(groups, everything=True)

    def _kill(self, groups: set[int], *, everything: bool = False) -> int:
        groups.discard(self._own_group)
        live = [
            proc
            for proc in _descendants(self.me, _process_table())
            if not proc.zombie and (everything or proc.pgid in groups)
        ]
        # Only groups that still have a member below the bench: a group id that has
        # gone may have been reused by a process that is not ours.
        for pgid in {proc.pgid for proc in live} - {self._own_group}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for proc in live:
            if proc.pgid == self._own_group:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            self._reap_orphans()
            table = _process_table()
            if not any(p.pid in table and not table[p.pid].zombie for p in live):
                break
            time.sleep(0.02)
        return len(live)

    def _reap_orphans(self) -> None:
        """Collect the exit status of adopted orphans (never of a child someone waits for)."""
        for proc in _process_table().values():
            if proc.ppid == self.me and proc.zombie and proc.pid not in self._spawned:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, os.WNOHANG)


# ---------------------------------------------------------------------------- sessions


class UncappedHttpTransport(ClientTransport):
    """Streamable HTTP with no cap on one server-sent event.

    The SDK client refuses an event over 1 MiB by default, and a 1 MiB `blob` result is
    sent twice (text and structured content), so the default would fail that row.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    @contextlib.asynccontextmanager
    async def connect_session(
        self,
        *,
        transport_options: TransportOptions | None = None,
        **session_kwargs: Unpack[SessionKwargs],
    ) -> AsyncIterator[ClientSession]:
        options = transport_options or TransportOptions()
        http = create_mcp_http_client(timeout=httpx2.Timeout(30.0, read=REQUEST_TIMEOUT))
        async with (
            http,
            streamable_http_client(self.url, http_client=http, max_sse_event_size=None) as (
                read_stream,
                write_stream,
            ),
            options.session_class(read_stream, write_stream, **session_kwargs) as session,
        ):
            yield session


@dataclass(slots=True)
class Session:
    """One connected client session, calling backend b1's tools by their exposed names."""

    client: Client[Any]
    names: dict[str, str] = field(default_factory=dict)

    async def resolve_names(self) -> None:
        """Map each tool to its exposed name: `b1_echo` through a gateway, else `echo`."""
        listed = {tool.name for tool in await self.client.list_tools()}
        for tool in TOOLS:
            for name in (f"b1_{tool}", tool):
                if name in listed:
                    self.names[tool] = name
                    break
            else:
                raise BenchError(f"tool {tool!r} not listed (got {sorted(listed)[:8]}...)")

    async def call(self, tool: str, **arguments: Any) -> mcp_types.CallToolResult:
        """Call a tool; a tool error is a bench failure, not a data point."""
        result = await self.client.call_tool_mcp(self.names[tool], arguments)
        if result.is_error:
            raise BenchError(f"{self.names[tool]} returned an error: {result.content!r:.200}")
        return result


@dataclass(slots=True)
class Env:
    """What every front needs: where to put files, where children log, who reaps them."""

    workdir: Path
    log: TextIO
    reaper: Reaper
    #: Let a front stop by itself first (closing stdin, SIGTERM); else kill it at once.
    graceful: bool = True
    #: Where to say that a front left processes running after its graceful stop.
    say: Callable[[str], None] = print
    #: A gateway config of the caller's own, instead of copies of the bench backend.
    servers: Path | None = None
    #: magg's program (`magg`), for the magg paths.
    magg: Path | None = None
    #: Called with a front's path and pids once it has been asked to stop, before what
    #: is left of it is killed: to see what it left behind.
    before_kill: Callable[[str, list[int]], None] | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def next_id(self) -> int:
        return next(self._ids)

    def config(self, backends: int, *, cache: bool = False) -> Path:
        """`servers` if set, else a servers.toml with `backends` copies of the bench
        backend, named b1..bN; with `cache`, b1's `lookup` is answered from the cache.

        The cache is a stage of every call only while some server has a `cache` table,
        so only the cache-hit row's gateways get one: the other rows measure the call
        path as a gateway without caching runs it.
        """
        if self.servers is not None:
            return self.servers
        path = self.workdir / f"servers-{backends}{'-cache' * cache}.toml"
        if not path.exists():
            lines = ["[gateway]", "connect_timeout = 120", ""]
            for index in range(1, backends + 1):
                lines += [
                    "[[servers]]",
                    f'name = "b{index}"',
                    'command = "python"',
                    f"args = [{str(BACKEND)!r}]".replace("'", '"'),
                ]
                if cache and index == 1:
                    # public: an anonymous HTTP caller gets no private entries at all.
                    lines.append(
                        f'cache = {{ tools = ["{CACHED_TOOL}"], ttl = 3600, scope = "public" }}'
                    )
                lines.append("")
            path.write_text("\n".join(lines))
        return path

    def magg_config(self, backends: int) -> Path:
        """magg's config.json with `backends` copies of the bench backend under the
        prefixes b1..bN, so its tools are `b1_echo`, ... as through mcp-agg."""
        path = self.workdir / f"magg-{backends}.json"
        if not path.exists():
            servers = {
                f"b{index}": {
                    "source": str(BACKEND),
                    "command": sys.executable,
                    "args": [str(BACKEND)],
                    "prefix": f"b{index}",
                }
                for index in range(1, backends + 1)
            }
            path.write_text(json.dumps({"servers": servers}, indent=2))
        return path


@dataclass(slots=True)
class Front:
    """A running path: its process (for RSS), its sessions, and how to complete a listing."""

    path: str
    backends: int
    pid: int
    sessions: list[Session]
    url: str | None = None
    _extra: list[Client[Any]] = field(default_factory=list)

    def backend_pids(self) -> list[int]:
        """The bench backends' processes behind this front (for direct: the front itself)."""
        if self.path.startswith("direct"):
            return [self.pid]
        below = _descendants(self.pid, _process_table())
        return [proc.pid for proc in below if str(BACKEND) in _cmdline(proc.pid)]

    async def list_complete(self) -> None:
        """Return once every backend's tools are listed (a gateway may list late starters later)."""
        expected = len(TOOLS) * (1 if self.path.startswith("direct") else self.backends)
        counts: list[int] = []
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                while True:
                    listed = await asyncio.gather(*(s.client.list_tools() for s in self.sessions))
                    counts = [len(tools) for tools in listed]
                    if all(count >= expected for count in counts):
                        return
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise BenchError(f"{self.path}: {counts} tools listed, expected {expected}") from None

    async def new_session(self) -> Session:
        """Another client session on the same front (HTTP only: stdio has one per process)."""
        if self.url is None:
            raise BenchError(f"{self.path} has one session per process")
        client: Client[Any] = Client(
            UncappedHttpTransport(self.url), timeout=REQUEST_TIMEOUT, init_timeout=REQUEST_TIMEOUT
        )
        await client.__aenter__()
        self._extra.append(client)
        session = Session(client)
        await session.resolve_names()
        return session


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _argv(path: str, backends: int, env: Env, port: int | None, *, cache: bool) -> list[str]:
    """The command line of a front's process (for direct: of one backend); `port` for
    the HTTP paths."""
    port_arg = [] if port is None else [str(port)]
    if path in {"direct", "direct-http"}:
        return [sys.executable, str(BACKEND), *(["--port", *port_arg] if port_arg else [])]
    if path in {"agg-stdio", "agg-http"}:
        config = str(env.config(backends, cache=cache))
        serve = [sys.executable, "-m", "mcp_agg", "serve", "-c", config, "--log-level", "warning"]
        return [*serve, *(["--transport", "http", "--port", *port_arg] if port_arg else [])]
    if path in MAGG_PATHS:
        if env.magg is None:
            raise BenchError("magg is not installed (make bench-magg)")
        # Its config from this file only, as it is (no writes, no reload polling), and its
        # log at warning, as the other fronts'.
        settings = [
            f"MAGG_CONFIG_PATH={env.magg_config(backends)}",
            "MAGG_READ_ONLY=true",
            "MAGG_AUTO_RELOAD=false",
            "MAGG_LOG_LEVEL=WARNING",
        ]
        http = ["--http", "--host", "127.0.0.1", "--port", *port_arg] if port_arg else []
        return ["env", *settings, str(env.magg), "serve", "--no-banner", *http]
    kind = {
        "fastmcp-mounted": "mounted",
        "fastmcp-mounted-http": "mounted",
        "fastmcp-mcpservers": "mcpservers",
    }[path]
    return [sys.executable, str(PROXY), kind, str(backends), str(BACKEND), *port_arg]


@dataclass(slots=True)
class _StdioChild:
    """One process that the SDK's stdio client spawns, and how to learn its pid."""

    env: Env
    argv: list[str]
    pidfile: Path = field(init=False)
    client: Client[Any] = field(init=False)
    entered: bool = False

    def __post_init__(self) -> None:
        self.pidfile = self.env.workdir / f"proc-{self.env.next_id()}.pid"
        shim = ["-c", _PIDFILE_SHIM, str(self.pidfile), *self.argv]
        transport = StdioTransport("/bin/sh", shim, keep_alive=False, log_file=self.env.log)
        self.client = Client(transport, timeout=REQUEST_TIMEOUT, init_timeout=REQUEST_TIMEOUT)

    async def enter(self) -> None:
        await self.client.__aenter__()
        self.entered = True

    def pid(self) -> int | None:
        """The child's pid once it has started (and recorded with the reaper), else None."""
        with contextlib.suppress(OSError, ValueError):
            found = int(self.pidfile.read_text())
            self.env.reaper.spawned(found)
            return found
        return None


async def _bounded(step: Awaitable[object], env: Env, what: str) -> None:
    """A graceful stop that may fail or hang: logged and given up on, never raised."""
    try:
        async with asyncio.timeout(STOP_GRACE):
            await step
    except Exception as exc:
        print(f"bench: {what}: {exc!r}", file=env.log, flush=True)


@contextlib.asynccontextmanager
async def open_front(
    path: str, backends: int, env: Env, *, cache: bool = False, ready: bool = True
) -> AsyncIterator[Front]:
    """Start a path in front of `backends` backends and connect one session to it.

    For direct, that is one session per backend (started in parallel), as a client with
    `backends` entries in its own config would do; direct http serves one backend. With
    `cache`, an mcp-agg front answers b1's `lookup` from its cache. mcp-agg http is
    connected to once `/readyz` says 200 (every backend started), or without `ready` as
    soon as its port accepts: it answers `initialize` while starting, as a client that
    started it sees (its other requests wait until it has started). On the way out,
    whatever happened, the front is asked to stop, then every process group it and its
    children had is killed.
    """
    http_client: Client[Any] | None = None
    children: list[_StdioChild] = []
    http: asyncio.subprocess.Process | None = None
    front: Front | None = None
    try:
        if path in HTTP_PATHS:
            port = _free_port()
            argv = _argv(path, backends, env, port, cache=cache)
            http = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=env.log, stderr=env.log,
                start_new_session=True,
            )  # fmt: skip
            env.reaper.spawned(http.pid)
            # FastMCP's HTTP servers listen once their lifespan (and, for the mounted
            # proxy, every backend's connection) is up; mcp-agg listens at once and says
            # when it is ready.
            await wait_ready(port, http, readyz=ready and path == "agg-http")
            url = f"http://127.0.0.1:{port}/mcp"
            client: Client[Any] = Client(
                UncappedHttpTransport(url), timeout=REQUEST_TIMEOUT, init_timeout=REQUEST_TIMEOUT
            )
            await client.__aenter__()
            http_client = client
            front = Front(path, backends, http.pid, [Session(client)], url=url)
        else:
            argv = _argv(path, backends, env, None, cache=cache)
            children = [_StdioChild(env, argv) for _ in range(backends if path == "direct" else 1)]
            outcomes = await asyncio.gather(
                *(child.enter() for child in children), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            first = children[0].pid()
            if first is None:
                raise BenchError(f"{path}: no pid recorded for the spawned process")
            front = Front(path, backends, first, [Session(child.client) for child in children])
        for pid in _started(http, children):
            env.reaper.note_tree(pid)  # while the tree is whole: its backends' groups
        yield front
    finally:
        started = _started(http, children)
        for pid in started:
            env.reaper.note_tree(pid)  # again: what it started since (mcpServers: per request)
        try:
            if not env.graceful:
                for pid in started:
                    env.reaper.end(pid)
            clients = [child.client for child in children if child.entered]
            clients += ([http_client] if http_client else []) + (front._extra if front else [])
            await asyncio.gather(
                *(_bounded(c.__aexit__(None, None, None), env, f"closing {path}") for c in clients)
            )
            if http is not None and http.returncode is None:
                http.send_signal(signal.SIGTERM)  # the gateway stops its backends itself
                await _bounded(http.wait(), env, f"stopping {path}")
        finally:
            if env.before_kill is not None:
                env.before_kill(path, started)
            left = sum(env.reaper.end(pid) for pid in started)
            if left and env.graceful:
                env.say(f"{PATHS[path]}: {left} process(es) still running after it stopped: killed")
            if http is not None:
                await _bounded(http.wait(), env, f"reaping {path}")


def _started(http: asyncio.subprocess.Process | None, children: list[_StdioChild]) -> list[int]:
    """The pids of a front's own processes that have started."""
    pids = [child.pid() for child in children]
    return ([http.pid] if http else []) + [pid for pid in pids if pid is not None]


async def wait_ready(
    port: int, process: asyncio.subprocess.Process, *, readyz: bool = True
) -> None:
    """Poll every 10 ms until the HTTP front is ready, or fail if it died: with `readyz`,
    until `/readyz` says 200 (mcp-agg listens at once, and says 503 until its backends
    have started); else until the port accepts a connection."""
    deadline = time.monotonic() + REQUEST_TIMEOUT
    async with httpx2.AsyncClient(timeout=5.0) as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise BenchError(f"HTTP front exited with {process.returncode} before ready")
            if readyz:
                with contextlib.suppress(httpx2.TransportError):
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        return
            else:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    return
            await asyncio.sleep(0.01)
    raise BenchError(f"HTTP front on port {port} was not ready in time")
