"""The stdio transport to a backend process, with a line reader that stays linear.

The MCP SDK's `stdio_client` joins the unfinished part of a line with every chunk read
from the pipe (`(buffer + chunk).split("\\n")`), so a message of n bytes costs O(n²/64 KiB)
copying: about 34 ms for a 1 MiB result (sent twice by FastMCP, text and structured), more
than the rest of the hop together. This transport is the SDK's in every other respect: it
spawns the process in its own process group with the SDK's helper, stops it the way the
spec says with the SDK's helper (close stdin, wait, then kill the tree), and parses each
line with the SDK's JSON-RPC adapter. Only the reading of lines is its own: bytes are kept
as a list of pieces and joined once per line.

It relies on `mcp.client.stdio`'s private helpers, pinned with the mcp version in
pyproject.toml; the tests run every stdio backend through it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

import anyio
import anyio.abc
import mcp_types
from fastmcp.client.transports import ClientTransport
from fastmcp.client.transports.base import SessionKwargs, TransportOptions
from mcp.client import stdio as sdk_stdio
from mcp.client.session import ClientSession
from mcp.shared.message import SessionMessage
from typing_extensions import Unpack

if TYPE_CHECKING:
    from mcp_agg.backend.transports.http import RequestHook
    from mcp_agg.config import ReplicaSpec

__all__ = ["ExitHook", "StdioRelayTransport", "split_lines", "stdio_transport"]

logger = logging.getLogger(__name__)

#: How long already-accepted messages get to reach the process when the session ends.
_FLUSH_TIMEOUT = 0.5
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
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
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


@contextlib.asynccontextmanager
async def _process_streams(
    command: str,
    args: list[str],
    env: dict[str, str],
    cwd: str,
    errlog: TextIO,
    on_exit: ExitHook | None = None,
) -> AsyncIterator[tuple[Any, Any]]:
    """A backend process and the session's two streams to it; stops it on exit.

    A process that ends by itself has its exit code told to `on_exit` before the
    session sees its stream end, so whoever hears of the loss can say how it ended.
    """
    process = await sdk_stdio._create_platform_compatible_process(
        command, args, env=sdk_stdio.get_default_environment() | env, errlog=errlog, cwd=cwd
    )
    # No await between the spawn and the task group: a cancellation there would leak it.
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
                    await sdk_stdio._drain_stdout(process)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
            if not stopping:
                logger.warning("reading from backend %s stopped unexpectedly", command)

    async def write_stdin() -> None:
        stdin = process.stdin
        assert stdin is not None
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await stdin.send(data.encode() + b"\n")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            # The process stopped reading: end the session rather than hang a request.
            await read_writer.aclose()
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_stdout)
        tg.start_soon(write_stdin)
        try:
            yield read_stream, write_stream
        finally:
            stopping = True
            with anyio.CancelScope(shield=True):
                read_stream.close()
                write_stream.close()
                with anyio.move_on_after(_FLUSH_TIMEOUT):
                    await writer_done.wait()
                await sdk_stdio._stop_server_process(process)
                for stream in (read_stream, write_stream, read_writer, write_reader):
                    await stream.aclose()
            tg.cancel_scope.cancel()


class StdioRelayTransport(ClientTransport):
    """A backend process over stdio, for one long-lived session: closing the session
    ends the process (and its process group)."""

    def __init__(
        self,
        command: str,
        args: list[str],
        env: dict[str, str],
        cwd: str,
        errlog: TextIO,
        on_exit: ExitHook | None = None,
    ) -> None:
        self.command = command
        self.args = args
        self.env = env
        self.cwd = cwd
        self.errlog = errlog
        self.on_exit = on_exit

    @contextlib.asynccontextmanager
    async def connect_session(
        self,
        *,
        transport_options: TransportOptions | None = None,
        **session_kwargs: Unpack[SessionKwargs],
    ) -> AsyncIterator[ClientSession]:
        options = transport_options or TransportOptions()
        async with (
            _process_streams(
                self.command, self.args, self.env, self.cwd, self.errlog, self.on_exit
            ) as (read_stream, write_stream),
            options.session_class(read_stream, write_stream, **session_kwargs) as session,
        ):
            yield session

    def __repr__(self) -> str:
        return f"<StdioRelayTransport {self.command}>"


def stdio_transport(
    spec: ReplicaSpec,
    stderr: IO[str] | None = None,
    on_request: RequestHook | None = None,
    on_exit: ExitHook | None = None,
) -> ClientTransport:
    """The transport to a stdio backend, its stderr to `stderr`, its exit code (when it
    ends by itself) to `on_exit` (`on_request`: unused).

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
    )
