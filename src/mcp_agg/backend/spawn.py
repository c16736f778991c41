"""Spawning a stdio backend's process: the one way the gateway starts one.

Both the stdio transport (every session, every reconnect) and the early start of
`serve` (`backend/early.py`, before the MCP stack is imported) spawn through
`spawn_stdio`, so a backend started early is started exactly as a reconnect starts it:
the SDK's inherited environment under the server's `env`, stdin and stdout as pipes,
and the leader of a process group of its own (what the transport's stop and the reaper
signal, so an `npx`/`uvx` launcher cannot leave its children behind).

It imports anyio alone: importing anything of `mcp` runs `mcp/__init__.py`, which
imports the SDK's whole client and server, and the early start is there to overlap
that import. The environment is the SDK's `get_default_environment()`, repeated here;
`tests/backend/test_spawn.py` holds the two to agreeing.
"""

from __future__ import annotations

import os
import subprocess
from typing import IO

import anyio
import anyio.abc

__all__ = ["INHERITED_ENV_VARS", "default_environment", "spawn_stdio"]

#: What a backend inherits of the gateway's environment (the SDK's
#: `DEFAULT_INHERITED_ENV_VARS` on POSIX); the server's `env` goes over it.
INHERITED_ENV_VARS = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")


def default_environment() -> dict[str, str]:
    """The SDK's `get_default_environment()`: the inherited variables that are set,
    shell functions (values starting with `()`) left out."""
    return {
        key: value
        for key in INHERITED_ENV_VARS
        if (value := os.environ.get(key)) is not None and not value.startswith("()")
    }


async def spawn_stdio(
    command: str, args: list[str], env: dict[str, str], cwd: str, stderr: IO[str] | int
) -> anyio.abc.Process:
    """A stdio backend's process, the leader of a new process group, its stderr to
    `stderr` (a file or a descriptor)."""
    return await anyio.open_process(
        [command, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        cwd=cwd,
        env=default_environment() | env,
        start_new_session=True,
    )
