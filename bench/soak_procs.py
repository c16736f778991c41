"""Processes, as the soak sees them: a gateway's resource use, every process seen under it,
and the HTTP backends the soak runs itself (killed and restarted on the same port).

Everything is read from /proc (Linux only), as the benchmark's harness does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tests.e2e.procs import descendants, port_open

from harness import Reaper

__all__ = ["OwnBackend", "Tree", "Usage", "usage"]

_TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds a backend the soak runs gets to listen after it is (re)started.
LISTEN_TIMEOUT = 60.0
#: Seconds it gets to exit after SIGTERM before SIGKILL.
STOP_GRACE = 3.0


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat from the third (state) on; None if it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command may hold spaces and parentheses: fields start after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


@dataclass(frozen=True, slots=True)
class Usage:
    """One reading of a process: resident memory, open fds, CPU time so far."""

    at: float
    rss_mib: float
    fds: int
    cpu_s: float


def usage(pid: int, at: float) -> Usage | None:
    """VmRSS, the number of entries in /proc/PID/fd and utime + stime; None if it has gone."""
    fields = _stat_fields(pid)
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    if fields is None:
        return None
    rss_kib = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    return Usage(at, rss_kib / 1024, fds, cpu)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


@dataclass(slots=True)
class Tree:
    """Every process seen below one root while it ran, by (pid, start time): a pid that
    is reused later by another process is not mistaken for one of them."""

    root: int
    seen: dict[tuple[int, int], str] = field(default_factory=dict)

    def sample(self) -> None:
        for pid in descendants(self.root) | {self.root}:
            fields = _stat_fields(pid)
            if fields is not None and fields[0] != "Z":
                self.seen.setdefault((pid, int(fields[19])), _cmdline(pid))

    def alive(self) -> list[str]:
        """`pid command` of each process seen that still runs (a zombie has ended)."""
        left = []
        for (pid, started), command in sorted(self.seen.items()):
            fields = _stat_fields(pid)
            if fields is not None and fields[0] != "Z" and int(fields[19]) == started:
                left.append(f"{pid} {command}")
        return left


@dataclass(slots=True)
class OwnBackend:
    """An HTTP backend the soak runs (not the gateway), so it can restart it on its port."""

    name: str
    argv: list[str]
    port: int
    log: TextIO
    reaper: Reaper
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    #: Every process this backend has been, for the processes-left count.
    trees: list[Tree] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def pids(self) -> set[int]:
        """The live process (and whatever it started), or nothing."""
        if self.process is None or self.process.poll() is not None:
            return set()
        return {self.process.pid} | descendants(self.process.pid)

    def start(self) -> None:
        """Spawn it, in a session of its own, on its port (its stdout is thrown away)."""
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        self.reaper.spawned(self.process.pid)
        tree = Tree(self.process.pid)
        tree.sample()
        self.trees.append(tree)

    async def listening(self) -> None:
        """Return once its port accepts connections; fail if it exits or takes too long."""
        async with asyncio.timeout(LISTEN_TIMEOUT):
            while not port_open(self.port):
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited before it listened on {self.port}")
                await asyncio.sleep(0.05)
        for tree in self.trees[-1:]:
            tree.sample()

    def kill(self) -> None:
        """SIGKILL its process group, and collect its exit status."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)  # a hang fault may have stopped it
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, STOP_GRACE)
        self.kill()
