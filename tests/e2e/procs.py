"""Real processes for end-to-end tests: ports, process trees, waiting with deadlines, and
the raw JSON-RPC the tests that speak MCP by hand send them."""

from __future__ import annotations

import inspect
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import httpx

REPO = Path(__file__).resolve().parents[2]
SERVERS = REPO / "examples" / "servers"
#: The test backends (FastMCP servers written for the e2e tests).
BACKENDS = REPO / "tests" / "e2e" / "backends"
PYTHON = sys.executable
#: The protocol version of the handshake era, which the tests' raw clients speak.
HANDSHAKE = "2025-11-25"
#: The Accept header of a POST to an MCP endpoint: a JSON answer or an SSE stream.
ACCEPT = "application/json, text/event-stream"
#: What a client sends once its `initialize` is answered.
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def demo_servers(folder: Path, *names: str, clock_port: int = 0, **extra: str) -> str:
    """`[[servers]]` entries for demo backends of examples/servers, as the repo's
    servers.toml has them: notes (its notes kept in `folder`), units, clock (an HTTP
    backend the gateway launches on `clock_port`), and wrapped (units behind a launcher
    that keeps a child, as npx and uvx do); notes and units when no names are given.
    `extra` adds lines to the entry of that name."""
    entries = {
        "notes": f"""command = "python"
args = ["{SERVERS / "notes.py"}"]
env = {{ NOTES_DIR = "{folder / "notes"}" }}
""",
        "units": f"""command = "python"
args = ["{SERVERS / "units.py"}"]
""",
        "clock": f"""command = "python"
args = ["{SERVERS / "clock.py"}", "--transport", "http", "--port", "{clock_port}"]
url = "http://127.0.0.1:{clock_port}/mcp"
""",
        "wrapped": f"""command = "sh"
args = ["-c", "{PYTHON} {SERVERS / "units.py"}; exit $?"]
""",
    }
    names = names or ("notes", "units")
    assert set(extra) <= set(names), f"extra lines for a server not asked for: {list(extra)}"
    lines = {name: f"{more}\n" for name, more in extra.items() if more}
    return "".join(
        f'\n[[servers]]\nname = "{name}"\n{entries[name]}{lines.get(name, "")}' for name in names
    )


#: Third-party MCP servers from the npm registry, pinned in tests/e2e/node/package.json
#: and installed by `make e2e-deps` (part of `make test`).
NODE_BIN = REPO / "tests" / "e2e" / "node" / "node_modules" / ".bin"


def node_server(name: str, *args: str) -> list[str]:
    """The command line of an installed npm MCP server (e.g. `mcp-server-everything`)."""
    path = NODE_BIN / name
    assert path.exists(), f"{path} is missing: run `make e2e-deps`"
    return [str(path), *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition until it holds; fail with `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """`wait_until` for async tests: poll `check()` (sync or async) until it returns
    something truthy, and return that; fail with `what` when the deadline passes."""
    try:
        with anyio.fail_after(timeout):
            while True:
                found = check()
                if inspect.isawaitable(found):
                    found = await found
                if found:
                    return found
                await anyio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def probe(port: int, path: str = "/readyz") -> int | None:
    """The status of `GET path` on a gateway's HTTP front at `port`; None when it does
    not answer (not listening yet, or gone)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            status: int = reply.status
            return status
    except urllib.error.HTTPError as refused:
        return refused.code
    except OSError:
        return None


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the command (which may hold spaces) start after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue  # a zombie is dead; only its parent's reaping is pending
        parents[int(entry)] = int(fields[1])
    return parents


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`."""
    parents = _ppid_map()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        children -= found
        found |= children
        frontier = children
    return found


def alive(pids: set[int]) -> set[int]:
    live = set(_ppid_map())
    return pids & live


def gone(pids: set[int]) -> bool:
    """None of `pids` is left: not running, and not a zombie its parent failed to reap."""
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process has used so far; a zombie's is its last."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exited(pid: int) -> bool:
    """The process has ended: a zombie until its parent waits for it, or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def pids_with_arg(fragment: str) -> set[int]:
    """Processes whose command line contains `fragment`."""
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fragment in cmdline and int(entry) != os.getpid():
            out.add(int(entry))
    return out & set(_ppid_map())


def mcp_agg(*args: str) -> subprocess.CompletedProcess[str]:
    """`mcp-agg ARGS` run to its end (at most two minutes), its output captured."""
    return subprocess.run(
        [PYTHON, "-m", "mcp_agg", *args], capture_output=True, text=True, timeout=120
    )


@contextmanager
def backend_process(
    script: str | Path, *args: str, port: int, timeout: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """A backend served over HTTP/SSE by the test itself (not by the gateway): a demo
    server of examples/servers by name, or any script by path."""
    path = script if isinstance(script, Path) else SERVERS / script
    with listening([PYTHON, str(path), *args, "--port", str(port)], port, timeout=timeout) as proc:
        yield proc


@contextmanager
def listening(
    command: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    stdout: IO[bytes] | None = None,
    timeout: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` run by the test in a process group of its own, once it listens on `port`
    (with `env` added to the environment, its output to `stdout` if given); the group is
    killed on exit."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env} if env is not None else None,
        start_new_session=True,
    )
    try:
        what = f"{Path(command[0]).name} on {port}"
        wait_until(lambda: port_open(port) or proc.poll() is not None, timeout, what)
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        yield proc
    finally:
        kill_group(proc)


@contextmanager
def served_gateway(
    config: Path,
    *args: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    stderr: IO[bytes] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`mcp-agg serve --transport http -c config [args]` until it is ready (`/readyz`
    200: every backend has started): its /mcp URL and process; the process group is
    killed on exit."""
    port = port or free_port()
    proc = subprocess.Popen(
        [
            *(PYTHON, "-m", "mcp_agg", "serve", "-c", str(config)),
            *("--transport", "http", "--port", str(port), *args),
        ],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env={**os.environ, **env} if env is not None else None,
        start_new_session=True,
    )
    try:
        wait_until(lambda: probe(port) == 200 or proc.poll() is not None, 60, "the gateway ready")
        assert proc.poll() is None, f"gateway exited with {proc.returncode}"
        yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def rpc(stdin: IO[bytes], stdout: IO[bytes], method: str, params: dict[str, Any], id: int) -> Any:
    """One request to a stdio gateway; every line read on the way must be a JSON-RPC
    message (stdout carries nothing but the protocol)."""
    stdin.write(
        json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).encode()
        + b"\n"
    )
    stdin.flush()
    while True:
        line = stdout.readline()
        assert line, f"gateway closed stdout before answering {method}"
        message = json.loads(line)
        assert message["jsonrpc"] == "2.0"
        if message.get("id") == id:
            return message["result"]


def initialize_params(client: str) -> dict[str, Any]:
    """The params of a handshake-era `initialize` from the raw client named `client`."""
    return {
        "protocolVersion": HANDSHAKE,
        "capabilities": {},
        "clientInfo": {"name": client, "version": "1"},
    }


def initialize_request(client: str, request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": initialize_params(client),
    }


def session_headers(session_id: str) -> dict[str, str]:
    """The headers of a POST in the handshake-era HTTP session `session_id`."""
    return {
        "Accept": ACCEPT,
        "Content-Type": "application/json",
        "Mcp-Session-Id": session_id,
        "MCP-Protocol-Version": HANDSHAKE,
    }


async def open_session(http: httpx.AsyncClient, url: str, client: str) -> dict[str, str]:
    """Initialize a handshake-era session at `url` as `client`: the headers that use it."""
    response = await post_initialize(http, url, client=client)
    assert response.status_code == 200, response.text
    headers = session_headers(response.headers["mcp-session-id"])
    assert (await http.post(url, json=INITIALIZED, headers=headers)).status_code == 202
    return headers


def sse_events(text: str) -> list[dict[str, str]]:
    """The events of an SSE body, each as its fields (`id`, `retry`, `data`, ...)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        if fields:
            events.append({name: value.strip() for name, value in fields.items()})
    return events


def messages(response: httpx.Response) -> list[Any]:
    """The JSON-RPC messages of a 200 response, sent as JSON or as SSE events."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return [json.loads(item) for item in data if item.strip()]
    return [response.json()]


async def post_initialize(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str] | None = None,
    *,
    client: str = "e2e-test",
) -> httpx.Response:
    """POST an `initialize` to the gateway at `url`, with extra `headers`."""
    return await http.post(
        url,
        json=initialize_request(client),
        headers={"Accept": ACCEPT, "Content-Type": "application/json", **(headers or {})},
    )


class StdioPeer:
    """A raw client of `mcp-agg serve` on stdio: it writes bytes to the gateway's stdin and
    reads its stdout line by line in a thread, so that every wait for an answer has a
    deadline (a gateway that stays silent fails the test instead of hanging it)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.proc = proc
        self._stdin = proc.stdin
        self._lines: queue.Queue[bytes] = queue.Queue()
        stdout = proc.stdout

        def read() -> None:
            with suppress(OSError, ValueError):  # the pipe closed under the read
                for line in iter(stdout.readline, b""):
                    self._lines.put(line)
            self._lines.put(b"")  # EOF

        self._reader = threading.Thread(target=read, name="stdio-peer", daemon=True)
        self._reader.start()

    def write(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(json.dumps(message).encode() + b"\n")

    def close_stdin(self) -> None:
        self._stdin.close()

    def receive(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next message on stdout; every line there must be a JSON-RPC message."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message from the gateway within {timeout:g}s") from None
        assert line, "the gateway closed stdout"
        message: dict[str, Any] = json.loads(line)
        assert message.get("jsonrpc") == "2.0", message
        return message

    def answer(self, request_id: Any, timeout: float = 15.0) -> dict[str, Any]:
        """The answer to request `request_id` (a result or an error); other messages on
        the way (notifications) are passed over."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(deadline - time.monotonic(), 0.0))
            if "method" not in message and message.get("id") == request_id:
                return message

    def request(
        self, method: str, params: dict[str, Any], request_id: int, timeout: float = 15.0
    ) -> dict[str, Any]:
        """Send a request and return its answer."""
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return self.answer(request_id, timeout)

    def initialize(self, client: str = "e2e-test") -> dict[str, Any]:
        """The handshake: `initialize`, then `notifications/initialized`; its result."""
        answer = self.request("initialize", initialize_params(client), 0)
        self.send(INITIALIZED)
        result: dict[str, Any] = answer["result"]
        return result

    def stop(self) -> None:
        """Kill the gateway's process group, let the reader see EOF, close the pipes."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        kill_group(self.proc)

    def ended(self, timeout: float) -> bool:
        """Whether stdout ends (EOF) within `timeout`, once what is left was read."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                if self._lines.get(timeout=left) == b"":
                    return True
            except queue.Empty:
                return False
        return False


@contextmanager
def stdio_gateway(config: Path, *args: str, stderr: IO[bytes] | None = None) -> Iterator[StdioPeer]:
    """`mcp-agg serve -c config [args]` on stdio, spoken to by a `StdioPeer`; the process
    group is killed on exit."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    peer = StdioPeer(proc)
    try:
        yield peer
    finally:
        peer.stop()


def peak_rss(pid: int) -> int:
    """The peak resident set size of a process so far, in bytes (VmHWM in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")
