"""The stdio front: the gateway serving one client over its stdin and stdout.

It replaces one piece of FastMCP's `run_stdio_async`: FastMCP reads stdin in a worker
thread, and a blocked thread read cannot be cancelled, so the server would wait for the
client's next line before it could stop (and unwind the lifespan, which stops and reaps
every backend). Here stdin and stdout are driven by the event loop when they are pipes,
sockets or a terminal; a regular file falls back to FastMCP's threads.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastmcp import FastMCP
from fastmcp.server.context import reset_transport, set_transport
from mcp.server.stdio import stdio_server

from mcp_agg.front.listener import OpsListener, serving_ops
from mcp_agg.front.signals import Hurry, Reload, handle_signals

__all__ = ["serve_stdio"]

#: Longest JSON-RPC line accepted from the client (a large tool argument fits).
_MAX_LINE = 64 * 1024 * 1024


async def serve_stdio(
    server: FastMCP[Any],
    *,
    ops: OpsListener | None = None,
    on_reload: Reload | None = None,
    hurry: Hurry | None = None,
) -> None:
    """What `server.run_stdio_async()` does, with stdin read by the event loop.

    Returns on stdin EOF (the client went away) or on SIGINT/SIGTERM; SIGHUP calls
    `on_reload`, and a stop signal while stopping `hurry`, if given. `ops` is served
    meanwhile.
    """
    serving = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        # Signals are heard until the end: the stop itself may be asked to hurry.
        tg.start_soon(handle_signals, serving.cancel, on_reload, hurry)
        with serving:
            async with serving_ops(ops):
                await _serve_stdio(server)
        tg.cancel_scope.cancel()


async def _serve_stdio(server: FastMCP[Any]) -> None:
    token = set_transport("stdio")
    try:
        # FastMCP has no public way to serve stdio with a given stdin stream: its
        # lifespan manager and low-level server are used here as run_stdio_async does.
        stdio = _EventLoopStdio() if _streamable(0) and _streamable(1) else None
        try:
            async with (
                server._lifespan_manager(),
                stdio_server(stdin=stdio, stdout=stdio) as (read_stream, write_stream),  # type: ignore[arg-type]
            ):
                low_level = server._mcp_server
                await low_level.run(
                    read_stream, write_stream, low_level.create_initialization_options()
                )
        finally:
            if stdio is not None:
                stdio.restore()
    finally:
        reset_transport(token)


def _streamable(fd: int) -> bool:
    """Whether the event loop can drive this descriptor (a pipe, socket or terminal)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


class _EventLoopStdio:
    """The protocol's stdin and stdout, driven by the event loop instead of threads.

    Reading in the loop makes the server cancellable (see the module docstring), and
    writing in the loop saves a thread hand-off per message. While serving, fd 0 reads
    the null device and fd 1 goes to stderr, so a stray `print` or a child that inherits
    them cannot corrupt the protocol stream; both are restored on exit.
    """

    def __init__(self) -> None:
        self._in = os.dup(0)
        self._out = os.dup(1)
        self._saved = (os.dup(0), os.dup(1))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        self._writer: asyncio.StreamWriter | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_MAX_LINE, loop=loop)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
            os.fdopen(self._in, "rb", buffering=0),
        )
        try:
            while line := await reader.readline():
                yield line.decode("utf-8", errors="replace")
        finally:
            transport.close()

    async def write(self, text: str) -> None:
        if self._writer is None:
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(self._out, "wb", buffering=0)
            )
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    def restore(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for fd, saved in zip((0, 1), self._saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
