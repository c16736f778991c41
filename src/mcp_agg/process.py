"""Processes the gateway launches itself: HTTP/SSE backends with both `command` and `url`.

Stdio backends are spawned by the MCP SDK's stdio client, which already puts each in its
own process group and kills the whole group on close. A launched HTTP backend gets the
same treatment here, with the SDK's own tree-termination routine, so `npx`/`uvx`
launchers cannot leave their children behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from anyio.abc import Process
from mcp.os.posix.utilities import terminate_posix_process_tree

__all__ = ["launched_process", "stderr_target"]

logger = logging.getLogger(__name__)

#: Seconds a launched backend gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE = 2.0


def stderr_target() -> int:
    """Where a child's output goes: the gateway's stderr (stdout is the protocol)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL


@contextlib.asynccontextmanager
async def launched_process(
    command: str, args: list[str], env: dict[str, str], cwd: Path
) -> AsyncIterator[Process]:
    """Run a backend process for the duration of the context, then reap its whole group."""
    full_env = {**os.environ, **env}
    target = stderr_target()
    process = await anyio.open_process(
        [command, *args],
        stdin=subprocess.DEVNULL,
        stdout=target,
        stderr=target,
        cwd=cwd,
        env=full_env,
        start_new_session=True,
    )
    logger.debug("launched %s (pid %d)", command, process.pid)
    try:
        yield process
    finally:
        with anyio.CancelScope(shield=True):
            await terminate_posix_process_tree(process, TERMINATE_GRACE)
            with anyio.move_on_after(TERMINATE_GRACE):
                await process.wait()
            await process.aclose()
