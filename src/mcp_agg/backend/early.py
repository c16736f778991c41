"""Stdio backends started before the gateway imports the MCP stack.

`serve` loads its config in a fraction of a second, then spends one to three seconds
importing the MCP SDK, FastMCP and pydantic's models of them before the first replica
connects (docs/benchmarks.md, "Startup and import time"). A backend started by a client
directly starts at once, and its own start-up (a Python interpreter importing the same
stack, `npx` resolving a package) takes as long again. So `serve` starts every stdio
backend's process right after the config is loaded, through the transport's own
`spawn_stdio`, and each replica's first session takes its process over instead of
spawning one; its reconnects spawn as before.

The processes are guarded as every backend is: each leads a process group of its own,
the reaper (started first, so it knows them as the gateway's) ends their groups if the
gateway dies, and `EarlyStarts` stops whichever no session took (the gateway failed to
start, or a replica stopped first) when it closes.

Nothing here imports `mcp`, `fastmcp` or the gateway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from mcp_agg.backend.reaper import Reaper
from mcp_agg.backend.spawn import spawn_stdio

if TYPE_CHECKING:
    from mcp_agg.config import ReplicaSpec

__all__ = ["EarlyStart", "EarlyStarts"]

logger = logging.getLogger(__name__)

#: Seconds an untaken process gets after SIGTERM before its group is SIGKILLed.
_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class EarlyStart:
    """A replica's backend process, started before its session; `stderr` is the read end
    of the pipe its stderr goes to (the session's output capture follows it)."""

    spec: ReplicaSpec
    process: anyio.abc.Process
    stderr: int


class EarlyStarts:
    """The stdio backends `serve` started before its imports, until a session takes each."""

    def __init__(self, reaper: Reaper) -> None:
        #: Started before any backend, so that it guards them; the gateway keeps it.
        self.reaper = reaper
        self._waiting: dict[str, EarlyStart] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls, specs: Iterable[ReplicaSpec]) -> AsyncIterator[EarlyStarts]:
        """The stdio backends of `specs` started now; those no session took are stopped
        on exit, and the reaper closed (the gateway closes it first when it ran)."""
        starts = cls(Reaper())
        starts.reaper.start()
        try:
            await starts._start(specs)
            yield starts
        finally:
            with anyio.CancelScope(shield=True):
                await starts.aclose()
            starts.reaper.close()

    def take(self, spec: ReplicaSpec) -> EarlyStart | None:
        """This replica's process, if one was started for exactly this spec: the caller
        owns it from now on."""
        early = self._waiting.get(spec.id)
        if early is None or early.spec != spec:
            return None  # a reload changed the server since: spawned afresh
        del self._waiting[spec.id]
        return early

    async def aclose(self) -> None:
        """Stop the processes no session took: SIGTERM to their groups, SIGKILL after
        `_GRACE`."""
        waiting, self._waiting = list(self._waiting.values()), {}
        for early in waiting:
            _signal_group(early.process.pid, signal.SIGTERM)
        with anyio.move_on_after(_GRACE):
            for early in waiting:
                await early.process.wait()
        for early in waiting:
            if early.process.returncode is None:
                _signal_group(early.process.pid, signal.SIGKILL)
                await early.process.wait()
            await early.process.aclose()
            os.close(early.stderr)

    async def _start(self, specs: Iterable[ReplicaSpec]) -> None:
        for spec in specs:
            command = spec.command
            if spec.server.url is not None or command is None:
                continue  # not a stdio backend
            read_end, write_end = os.pipe()
            try:
                process = await spawn_stdio(
                    command, list(spec.server.args), dict(spec.server.env), str(spec.cwd), write_end
                )
            except (OSError, ValueError) as exc:  # not found, not executable, a NUL byte
                # Its session spawns it again and reports the failure as every other.
                logger.debug("backend %s: not started early: %s", spec.id, exc)
                os.close(read_end)
                continue
            finally:
                os.close(write_end)  # the child has its own copy
            self._waiting[spec.id] = EarlyStart(spec, process, read_end)
            logger.info(
                "backend %s: started before the gateway's imports (pid %d)", spec.id, process.pid
            )
        self.reaper.adopt_children()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
