"""The stdio front: the gateway serving one client over its stdin and stdout.

It replaces FastMCP's `run_stdio_async` and the MCP SDK's `stdio_server` under it, for
three reasons:

- FastMCP reads stdin in a worker thread, and a blocked thread read cannot be
  cancelled, so the server would wait for the client's next line before it could stop
  (and unwind the lifespan, which stops and reaps every backend). Here stdin and stdout
  are driven by the event loop when they are pipes, sockets or a terminal; a regular
  file or /dev/null is read and written in threads;
- the SDK's line reading has no bound and answers nothing it cannot read (`wire`);
- the SDK ends the session when stdin closes, cutting off the calls in flight. Here
  stdin closing, SIGTERM and SIGINT drain the front instead (`drain`): the calls in
  flight are answered, within `shutdown_grace`, before the gateway stops;
- `run_stdio_async` starts every backend before it reads stdin. Here the front answers
  `initialize` at once and holds the rest until the gateway has started (`starting`),
  and `serve` answers it earlier still, before the MCP stack is imported (`earlyinit`):
  the front reads that first line again and drops the SDK's answer to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import selectors
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
from fastmcp import FastMCP
from fastmcp.server.context import reset_transport, set_transport
from mcp.server.runner import serve_dual_era_loop

from mcp_agg.config import GatewayConfig
from mcp_agg.front.drain import Drain
from mcp_agg.front.earlyinit import EarlyInitialize
from mcp_agg.front.fds import pollable, write_all
from mcp_agg.front.signals import Hurry, Reload, handle_signals
from mcp_agg.front.starting import UntilStarted, lifespan_beside
from mcp_agg.front.wire import LineWire

if TYPE_CHECKING:
    from mcp_agg.front.listener import OpsListener

__all__ = ["serve_stdio"]

#: Bytes read from stdin at a time.
_CHUNK = 64 * 1024
#: How long the last answers get to reach stdout once the session has ended.
_FLUSH_TIMEOUT = 5.0
#: The capacity asked for a stdout pipe (Linux's default for an unprivileged process's
#: largest, /proc/sys/fs/pipe-max-size).
_PIPE_SIZE = 1 << 20


async def serve_stdio(
    server: FastMCP[Any],
    *,
    settings: GatewayConfig,
    ops: OpsListener | None = None,
    on_reload: Reload | None = None,
    hurry: Hurry | None = None,
    early: EarlyInitialize | None = None,
) -> None:
    """What `server.run_stdio_async()` does, with stdin read by the event loop.

    Returns once drained after stdin EOF (the client went away) or SIGINT/SIGTERM; a stop
    signal while still starting returns at once. SIGHUP calls `on_reload`, and a stop
    signal while stopping `hurry`, if given. `settings` gives `max_message_bytes` and
    `shutdown_grace`; `ops` is served meanwhile. `early`: what read stdin until now
    (`earlyinit`), which the front takes over from.
    """
    read, answered = early.handover() if early is not None else (b"", None)
    drain = Drain(grace=settings.shutdown_grace)
    drain.install(server)
    serving = anyio.CancelScope()
    started: anyio.Event | None = None

    def stop() -> None:
        if started is None or not started.is_set():
            serving.cancel()  # still starting the backends: nothing to drain
        else:
            drain.begin("received a stop signal")

    async with anyio.create_task_group() as tg:
        # Signals are heard until the end: the stop itself may be asked to hurry.
        tg.start_soon(handle_signals, stop, on_reload, hurry)
        with serving:
            async with (
                _serving(ops),
                _serving_stdio(read) as pipes,
                lifespan_beside(server) as started,
            ):
                wire = LineWire(
                    pipes,
                    limit=settings.max_message_bytes,
                    on_eof=drain.begin,
                    answered=answered,
                )
                await _serve(server, wire, drain, started)
        tg.cancel_scope.cancel()


def _serving(ops: OpsListener | None) -> contextlib.AbstractAsyncContextManager[None]:
    """`ops` served while the block runs; without one (the usual stdio gateway) its
    module, and the Host/Origin guard's, is not imported at all (uvicorn and starlette,
    which it serves with, come with the MCP SDK regardless)."""
    if ops is None:
        return contextlib.nullcontext()
    from mcp_agg.front.listener import serving_ops

    return serving_ops(ops)


async def _serve(server: FastMCP[Any], wire: LineWire, drain: Drain, started: anyio.Event) -> None:
    """The server loop on the wire until drained; then every answer is flushed. Until
    `started`, only the handshake is answered (`starting`)."""

    async def end_when_drained() -> None:
        await drain.run(wire.idle)
        wire.close()

    low_level = server._mcp_server
    async with anyio.create_task_group() as tg:
        tg.start_soon(wire.read_client)
        tg.start_soon(wire.write_client)
        tg.start_soon(end_when_drained)
        # The loop `low_level.run` drives, without the lifespan it would enter first
        # (it is entered beside the serving); the server's own lifespan state is empty.
        await serve_dual_era_loop(
            low_level,
            UntilStarted(wire.read_stream, started),
            wire.write_stream,
            lifespan_state={},
            init_options=low_level.create_initialization_options(),
        )
        with anyio.move_on_after(_FLUSH_TIMEOUT):
            await wire.written.wait()
        tg.cancel_scope.cancel()  # the reader may be waiting for input that never comes


@contextlib.asynccontextmanager
async def _serving_stdio(read: bytes) -> AsyncIterator[_Stdio]:
    """Stdin and stdout as the protocol's streams, `read` (already read from stdin) first;
    FastMCP told its transport is stdio."""
    token = set_transport("stdio")
    try:
        pipes = _Stdio(read)
        try:
            yield pipes
        finally:
            pipes.restore()
    finally:
        reset_transport(token)


class _Stdio:
    """The protocol's stdin and stdout (`wire.ByteStreams`), driven by the event loop
    where it can (see the module docstring), else read and written in threads.

    While serving, fd 0 reads the null device and fd 1 goes to stderr, so a stray
    `print` or a child that inherits them cannot corrupt the protocol stream; both are
    restored on exit. `read`: bytes of stdin read before (`earlyinit`), read first.
    """

    def __init__(self, read: bytes = b"") -> None:
        self._read = read
        self._in = os.dup(0)
        self._out = os.dup(1)
        self._saved = (os.dup(0), os.dup(1))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        self._loop_in = pollable(self._in, selectors.EVENT_READ)
        self._loop_out = pollable(self._out, selectors.EVENT_WRITE)
        _widen(self._out)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._transports: list[asyncio.BaseTransport] = []
        #: The descriptors no transport has taken over (and will close).
        self._owned = {self._in, self._out}

    async def read(self) -> bytes:
        if self._read:
            read, self._read = self._read, b""
            return read
        if not self._loop_in:
            return await anyio.to_thread.run_sync(os.read, self._in, _CHUNK)
        if self._reader is None:
            loop = asyncio.get_running_loop()
            # The reader's limit only bounds its buffer (reading stops past twice that).
            reader = self._reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                os.fdopen(self._in, "rb", buffering=0),
            )
            self._transports.append(transport)
            self._owned.discard(self._in)
        return await self._reader.read(_CHUNK)

    async def write(self, data: bytes) -> None:
        if not self._loop_out:
            await anyio.to_thread.run_sync(write_all, self._out, data)
            return
        if self._writer is None:
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(self._out, "wb", buffering=0)
            )
            self._transports.append(transport)
            self._owned.discard(self._out)
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self._writer.write(data)
        await self._writer.drain()

    def restore(self) -> None:
        for transport in self._transports:
            transport.close()
        for fd in self._owned:
            os.close(fd)
        for fd, saved in zip((0, 1), self._saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)


def _widen(fd: int) -> None:
    """Let a pipe on `fd` hold 1 MiB instead of 64 KiB, where the OS allows it.

    asyncio writes what the pipe takes and keeps the rest in a buffer it shifts down after
    every write: a 2 MiB answer into a 64 KiB pipe is 32 writes, wake-ups and shifts of
    what is left, about a millisecond of CPU (docs/performance.md). Linux only; anything
    else (not a pipe, over the user's pipe quota) keeps the pipe as it is.
    """
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
