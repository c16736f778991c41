"""Processes the gateway launches itself: HTTP/SSE backends with both `command` and `url`.

Stdio backends are spawned by the MCP SDK's stdio client, which already puts each in its
own process group and kills the whole group on close. A launched HTTP backend gets the
same treatment here, with the SDK's own tree-termination routine, so `npx`/`uvx`
launchers cannot leave their children behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import anyio
from anyio.abc import Process
from mcp.os.posix.utilities import terminate_posix_process_tree

__all__ = ["OutputCapture", "launched_process"]

logger = logging.getLogger(__name__)

#: Seconds a launched backend gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE = 2.0


class OutputCapture:
    """A backend's stderr: logged line by line under its replica id, the last lines kept.

    A backend that fails to start usually says why on stderr ("ModuleNotFoundError",
    "address already in use"); keeping the tail lets `status` and the logs show it.
    """

    def __init__(self, label: str, keep: int = 20) -> None:
        self.label = label
        self.tail: collections.deque[str] = collections.deque(maxlen=keep)
        self._logger = logging.getLogger(f"mcp_agg.backend.{label}")
        self._writer: IO[str] | None = None
        self._pump: asyncio.Task[None] | None = None

    def open(self) -> IO[str]:
        """A pipe's write end to hand to the child as its stderr; read by the event loop."""
        read_fd, write_fd = os.pipe()
        self._writer = os.fdopen(write_fd, "w")
        self.follow(read_fd)
        return self._writer

    def follow(self, read_fd: int) -> None:
        """Read a pipe whose write end a child already has (one started early: see
        `backend/early.py`); the capture owns `read_fd` from now on."""
        self._pump = asyncio.create_task(self._read(os.fdopen(read_fd, "rb", buffering=0)))

    def close_writer(self) -> None:
        """Drop our copy of the write end once the child has its own (EOF when it exits)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    async def aclose(self) -> None:
        self.close_writer()
        pump, self._pump = self._pump, None
        if pump is not None:
            with anyio.move_on_after(1):
                await asyncio.wait({pump})
            pump.cancel()

    @property
    def last_line(self) -> str | None:
        return self.tail[-1] if self.tail else None

    async def _read(self, pipe: IO[bytes]) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1024 * 1024)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while True:
                try:
                    raw = await reader.readline()
                except ValueError:  # a line over the limit: skip it
                    continue
                if not raw:
                    return
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    self.tail.append(line)
                    self._logger.info("%s", line)
        finally:
            transport.close()


@contextlib.asynccontextmanager
async def launched_process(
    command: str, args: list[str], env: dict[str, str], cwd: Path, output: OutputCapture
) -> AsyncIterator[Process]:
    """Run a backend process for the duration of the context, then reap its whole group."""
    full_env = {**os.environ, **env}
    target = output.open()
    try:
        process = await anyio.open_process(
            [command, *args],
            stdin=subprocess.DEVNULL,
            stdout=target,
            stderr=target,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
    finally:
        output.close_writer()
    logger.debug("launched %s (pid %d)", command, process.pid)
    try:
        yield process
    finally:
        with anyio.CancelScope(shield=True):
            await terminate_posix_process_tree(process, TERMINATE_GRACE)
            with anyio.move_on_after(TERMINATE_GRACE):
                await process.wait()
            await process.aclose()
            await output.aclose()
