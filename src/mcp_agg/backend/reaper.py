"""A watchdog process that kills the backends' process groups if the gateway dies.

A clean shutdown stops every backend through its session. A crash (SIGKILL, an OOM
kill) runs no code at all: stdio backends then see stdin close and usually exit, but
an HTTP backend the gateway launched, or a grandchild of an `npx`/`uvx` launcher that
does not read stdin, would live on. The reaper is a small process of its own (its own
session, so a signal to the gateway's group does not reach it) that holds the read end
of a pipe from the gateway; when the pipe closes, however the gateway ended, it
terminates every process group it was told about.

Each backend is started as the leader of a new process group (pgid == pid). The
reaper records the leader's start time with the pgid, so that a pid reused by an
unrelated group leader after the backend ended is never signalled.

Backends are started for as long as the gateway runs (a reconnect, a reload that adds
a server), so the gateway side knows each child by pid *and* start time: a backend
that got the pid of one that ended earlier is a new process, and is guarded too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Reaper", "main"]

logger = logging.getLogger(__name__)

#: Seconds between SIGTERM and SIGKILL when the reaper cleans up.
_GRACE = 2.0


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.update(int(c) for c in (task / "children").read_text().split())
    except OSError:
        pass
    return found


class Reaper:
    """The gateway's side: start the watchdog, tell it about new process groups."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        #: The children already seen (guarded or not ours), by pid, with start times.
        self._known: dict[int, str | None] = {}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start the watchdog, once (`serve` starts it before its early backends)."""
        if self._process is not None:
            return
        if not Path("/proc/self/stat").exists():
            logger.warning("no /proc: backends are not guarded against a gateway crash")
            return
        # Children from before the gateway started are not its backends (a process that
        # embeds a Gateway may have others): never adopt them.
        self._known.update((pid, _start_time(pid)) for pid in _children(os.getpid()))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "mcp_agg.backend.reaper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

    def adopt_children(self) -> None:
        """Register every child process of the gateway as a process group to guard."""
        process = self._process
        if process is None or process.stdin is None or process.poll() is not None:
            return
        lines = []
        current: dict[int, str | None] = {}
        for child in _children(os.getpid()) - {process.pid}:
            started = current[child] = _start_time(child)
            if child in self._known and self._known[child] == started:
                continue
            with contextlib.suppress(OSError):
                if started is not None and os.getpgid(child) == child:
                    lines.append(f"{child} {started}\n")
        # Children that ended are forgotten: their pid may come back as a new backend.
        self._known = current
        if lines:
            with contextlib.suppress(OSError):
                process.stdin.write("".join(lines).encode())
                process.stdin.flush()

    def terminate_now(self) -> None:
        """End every guarded backend now: the watchdog, told nothing more is coming,
        sends their groups SIGTERM (SIGKILL after its grace), as it does on a crash."""
        process = self._process
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()

    def close(self) -> None:
        """Normal shutdown: the backends are stopped; the watchdog checks and exits."""
        process = self._process
        if process is None:
            return
        self._process = None
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=_GRACE + 3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_groups(groups: dict[int, str], signum: int) -> None:
    for pgid, started in groups.items():
        current = _start_time(pgid)
        if current is not None and current != started:
            continue  # the pid now belongs to another process: not ours
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)


def main() -> None:
    """The watchdog: read `PGID STARTTIME` lines until EOF, then end those groups."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the gateway's
    groups: dict[int, str] = {}
    for line in sys.stdin.buffer:
        with contextlib.suppress(ValueError):
            pgid, started = line.decode().split()
            groups[int(pgid)] = started
    live = {pgid: started for pgid, started in groups.items() if _alive(pgid)}
    if not live:
        return
    _signal_groups(live, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE
    while time.monotonic() < deadline and any(_alive(pgid) for pgid in live):
        time.sleep(0.05)
    _signal_groups({p: s for p, s in live.items() if _alive(p)}, signal.SIGKILL)


if __name__ == "__main__":
    main()
