"""The stdio transport to a backend process, with a line reader that stays linear.

The MCP SDK's `stdio_client` joins the unfinished part of a line with every chunk read
from the pipe (`(buffer + chunk).split("\\n")`), so a message of n bytes costs O(n²/64 KiB)
copying: about 34 ms for a 1 MiB result (sent twice by FastMCP, text and structured), more
than the rest of the hop together. Here bytes are kept as a list of pieces and joined once
per line. The process is spawned in its own process group by `spawn_stdio`
(`backend/spawn.py`), or already was (`backend/early.py`), and each line read and written
by `mcp_agg.codec` (orjson, as strict as the SDK's adapter).

Stopping the process is its own too. The spec's steps are the SDK's (close stdin, wait,
SIGTERM the group, SIGKILL it), each bounded, but they run in a task of their own that no
cancellation reaches. The SDK runs them in the session's task, shielded: FastMCP cancels
that task natively when a connect or close overruns, which no anyio shield stops, so a
backend that ignores SIGTERM was never SIGKILLed; its open stdout then held the reader's
shielded drain, and anyio re-delivered the cancellation on every turn of the event loop:
the gateway spun at 100% CPU and the replica was never retried. The session's side only
waits for the stop, and gives up waiting (never stopping) when cancelled; closing the
transport waits for it, so a replica's process is gone before the next one starts.

It relies on `mcp.client.stdio`'s private helpers, pinned with the mcp version in
pyproject.toml; the tests run every stdio backend through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

import anyio
import anyio.abc
from fastmcp.client.transports import ClientTransport
from fastmcp.client.transports.base import SessionKwargs, TransportOptions
from mcp.client import stdio as sdk_stdio
from mcp.client.session import ClientSession
from mcp.os.posix.utilities import terminate_posix_process_tree
from mcp.shared.message import SessionMessage
from typing_extensions import Unpack

from mcp_agg.backend.process import TERMINATE_GRACE
from mcp_agg.backend.spawn import spawn_stdio
from mcp_agg.codec import decode, encode

if TYPE_CHECKING:
    from mcp_agg.backend.transports.http import RequestHook
    from mcp_agg.config import ReplicaSpec

__all__ = ["EXIT_GRACE", "ExitHook", "StdioRelayTransport", "split_lines", "stdio_transport"]

logger = logging.getLogger(__name__)

#: How long already-accepted messages get to reach the process when the session ends.
_FLUSH_TIMEOUT = 0.5
#: Seconds a backend gets to exit once its stdin is closed; then its process group gets
#: SIGTERM, and SIGKILL `TERMINATE_GRACE` later.
EXIT_GRACE = 2.0
#: Seconds to see a killed process exit; only one stuck in the kernel runs it out.
_REAP_TIMEOUT = 2.0
#: How long a backend that closed its stdout gets to exit, for its exit code to be told.
_EXIT_WAIT = 1.0

#: Told a backend process's exit code when it ends by itself (not stopped by the gateway).
ExitHook = Callable[[int], None]


def split_lines(pending: list[bytes], chunk: bytes) -> Iterable[bytes]:
    """The lines that `chunk` completes; the unfinished rest is kept in `pending`.

    Linear in the bytes read, however long a line: each byte is copied once into the
    pieces and once into its line.
    """
    start = 0
    while (end := chunk.find(b"\n", start)) >= 0:
        piece = chunk[start:end]
        if pending:
            pending.append(piece)
            piece = b"".join(pending)
            pending.clear()
        yield piece
        start = end + 1
    if start < len(chunk):
        pending.append(chunk[start:])


def _parse(line: bytes) -> SessionMessage | Exception:
    """One line as a message, or the parse error as a value for the session to surface."""
    try:
        message = decode(line)
    except ValueError as exc:
        logger.warning("backend sent a line that is not a JSON-RPC message: %s", exc)
        return exc
    return SessionMessage(message)


async def _report_exit(wait: Callable[[], Awaitable[int]], on_exit: ExitHook | None) -> None:
    """Tell `on_exit` how a backend that closed its stdout ended, once it has exited
    (`wait`: the process's)."""
    if on_exit is None:
        return
    with anyio.move_on_after(_EXIT_WAIT):
        on_exit(await wait())


async def _drain(stdout: anyio.abc.ByteReceiveStream) -> None:
    """Read and drop a process's output until it ends or the caller is cancelled: a
    backend blocked writing to a full pipe could neither read its stdin nor exit."""
    with contextlib.suppress(
        anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError
    ):
        while True:
            await stdout.receive()


async def _stop(process: anyio.abc.Process) -> None:
    """Stop a backend the spec's way, each step bounded: close its stdin, give it
    `EXIT_GRACE` to exit, then SIGTERM its process group and SIGKILL it `TERMINATE_GRACE`
    later. Its stdout is drained meanwhile, and closed at the end even if a process that
    left the group still holds it."""
    assert process.stdin is not None
    assert process.stdout is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_drain, process.stdout)
        await sdk_stdio._close_pipe(process.stdin)
        if not await sdk_stdio._wait_for_process_exit(process, EXIT_GRACE):
            await terminate_posix_process_tree(process, TERMINATE_GRACE)
            if not await sdk_stdio._wait_for_process_exit(process, _REAP_TIMEOUT):
                logger.warning("backend process %d survived SIGKILL", process.pid)
        tg.cancel_scope.cancel()
    await sdk_stdio._close_pipe(process.stdout)
    sdk_stdio._close_subprocess_transport(process)


@contextlib.asynccontextmanager
async def _process_streams(
    command: str,
    args: list[str],
    env: dict[str, str],
    cwd: str,
    errlog: TextIO,
    stops: set[asyncio.Task[None]],
    on_exit: ExitHook | None = None,
    started: anyio.abc.Process | None = None,
) -> AsyncIterator[tuple[Any, Any]]:
    """A backend process and the session's two streams to it; stops it on exit, in a task
    added to `stops` until it is done. `started`: the process, already running (started
    early, see `backend/early.py`), instead of a new one.

    A process that ends by itself has its exit code told to `on_exit` before the
    session sees its stream end, so whoever hears of the loss can say how it ended.
    """
    process = started or await spawn_stdio(command, args, env, cwd, errlog)
    # No await between the spawn and the try: a cancellation there would leak it.
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    writer_done = anyio.Event()
    stopping = False

    async def read_stdout() -> None:
        stdout = process.stdout
        assert stdout is not None
        pending: list[bytes] = []
        try:
            async with read_writer:
                try:
                    async for chunk in stdout:
                        for line in split_lines(pending, chunk):
                            if line.strip():
                                await read_writer.send(_parse(line))
                    if not stopping:  # its stdout closed, and not by us: it is ending
                        await _report_exit(process.wait, on_exit)
                finally:
                    await _drain(stdout)  # while the last messages are flushed
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
            if not stopping:
                logger.warning("reading from backend %s stopped unexpectedly", command)

    async def write_stdin() -> None:
        stdin = process.stdin
        assert stdin is not None
        try:
            async with write_reader:
                async for message in write_reader:
                    await stdin.send(encode(message.message))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            # The process stopped reading: end the session rather than hang a request.
            await read_writer.aclose()
        finally:
            writer_done.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_stdout)
            tg.start_soon(write_stdin)
            try:
                yield read_stream, write_stream
            finally:
                stopping = True
                read_stream.close()
                write_stream.close()
                with anyio.CancelScope(shield=True), anyio.move_on_after(_FLUSH_TIMEOUT):
                    await writer_done.wait()
                tg.cancel_scope.cancel()
    finally:
        for stream in (read_stream, write_stream, read_writer, write_reader):
            stream.close()
        stop = asyncio.create_task(_stop(process), name=f"stopping backend {process.pid}")
        stops.add(stop)
        stop.add_done_callback(stops.discard)
        # Cancelled, this stops waiting, never stopping (see the module's docstring).
        await asyncio.shield(stop)


class StdioRelayTransport(ClientTransport):
    """A backend process over stdio, for one long-lived session: closing the session
    ends the process (and its process group). `process`: one already running (started
    early), which the first session takes instead of spawning; later ones spawn."""

    def __init__(
        self,
        command: str,
        args: list[str],
        env: dict[str, str],
        cwd: str,
        errlog: TextIO,
        on_exit: ExitHook | None = None,
        process: anyio.abc.Process | None = None,
    ) -> None:
        self.command = command
        self.args = args
        self.env = env
        self.cwd = cwd
        self.errlog = errlog
        self.on_exit = on_exit
        self._started = process
        #: The stops of its processes still under way.
        self._stops: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def connect_session(
        self,
        *,
        transport_options: TransportOptions | None = None,
        **session_kwargs: Unpack[SessionKwargs],
    ) -> AsyncIterator[ClientSession]:
        options = transport_options or TransportOptions()
        started, self._started = self._started, None
        async with (
            _process_streams(
                self.command,
                self.args,
                self.env,
                self.cwd,
                self.errlog,
                self._stops,
                self.on_exit,
                started,
            ) as (read_stream, write_stream),
            options.session_class(read_stream, write_stream, **session_kwargs) as session,
        ):
            yield session

    async def close(self) -> None:
        """Wait until the processes of its sessions are stopped, at most until they are
        SIGKILLed. Cancelled, it stops waiting; the stops go on."""
        if self._stops:
            await asyncio.wait(set(self._stops))

    def __repr__(self) -> str:
        return f"<StdioRelayTransport {self.command}>"


def stdio_transport(
    spec: ReplicaSpec,
    stderr: IO[str] | None = None,
    on_request: RequestHook | None = None,
    on_exit: ExitHook | None = None,
    *,
    process: anyio.abc.Process | None = None,
) -> ClientTransport:
    """The transport to a stdio backend, its stderr to `stderr`, its exit code (when it
    ends by itself) to `on_exit` (`on_request`: unused); `process`: the backend's,
    started early, for the first session.

    The replica's session is long-lived and its own: closing it ends the process (and
    its process group), never leaves it running for reuse.
    """
    command = spec.command
    assert command is not None  # the config model guarantees command or url
    server = spec.server
    return StdioRelayTransport(
        command,
        list(server.args),
        dict(server.env),
        str(spec.cwd),
        cast("TextIO", stderr) if stderr is not None else sys.stderr,
        on_exit,
        process,
    )
