"""Faults at random (seeded), each undone after a while, each logged with its times.

- kill: SIGKILL a replica's process; the gateway respawns it (stdio, launched HTTP), or
  the soak restarts it after 1-6 s (its own HTTP backends);
- hang: SIGSTOP a replica's process, SIGCONT 3-10 s later;
- slow: a faulty backend answers after 0.5, 1.5 or 5 s, for 5-15 s;
- junk: a faulty backend over stdio writes a line that is not JSON-RPC before each
  answer, for 5-15 s;
- session expiry: a stateful HTTP backend the soak runs is restarted at once on its port,
  so every session it had is gone;
- client drop: an HTTP client of the gateway closes its connection mid-call and never
  deletes its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from tests.e2e.procs import INITIALIZED, pids_with_arg, post_initialize, session_headers

from soak_setup import Replica, Topology

__all__ = ["CLASSES", "DROP", "Fault", "Injector"]

#: Fault classes on replicas, and how many of each in every round of picks.
CLASSES = {"kill": 3, "hang": 3, "slow": 2, "junk": 2, "session expiry": 2}
DROP = "client drop"
#: At most this many replica faults at once (never two on one replica).
MAX_ACTIVE = 2
#: Seconds between two picks of a new replica fault, and between two client drops.
FAULT_GAP = (4.0, 12.0)
DROP_GAP = (6.0, 15.0)
#: Seconds the gateway gets to respawn a killed replica before the fault is called unrecovered.
RESPAWN_TIMEOUT = 60.0
#: No fault lasts longer than this, recovery included.
FAULT_BOUND = 90.0
#: The long call a dropping client leaves (3 s, progress every second; idempotent, and
#: shorter than attempt_timeout, so the gateway has no reason to give up on it itself).
LONG_CALL = ("everything_trigger-long-running-operation", {"duration": 3, "steps": 3})


@dataclass(slots=True)
class Fault:
    """One injected fault; times are seconds since the soak began."""

    number: int
    cls: str
    target: str
    start: float
    end: float | None = None
    note: str = ""
    recovered: bool = True

    def line(self) -> str:
        end = f"{self.end:7.1f}s" if self.end is not None else "    ...."
        return f"{self.start:7.1f}s-{end} #{self.number} {self.cls} {self.target}: {self.note}"


@dataclass(slots=True)
class Injector:
    """Picks and runs faults until `until`; `faults` holds every one, in order."""

    topology: Topology
    http_url: str
    clock: Callable[[], float]
    rng: random.Random
    say: Callable[[str], None]
    faults: list[Fault] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    deck: list[str] = field(default_factory=list)

    async def run(self, until: float) -> None:
        """Inject faults until `until`, then wait for the active ones to be undone."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._drops(until))
            while (now := self.clock()) < until:
                await asyncio.sleep(min(self.rng.uniform(*FAULT_GAP), until - now))
                if self.clock() < until and len(self.active) < MAX_ACTIVE:
                    picked = self._pick()
                    if picked is not None:
                        group.create_task(self._run(*picked))

    def _pick(self) -> tuple[str, Replica] | None:
        """The next class from a shuffled deck (each class as often as its weight, so a
        short run sees them all), on a replica it fits that no fault holds."""
        free = [r for r in self.topology.replicas if r.tag not in self.active]
        targets: dict[str, list[Replica]] = {
            "kill": free,
            "hang": free,
            "slow": [r for r in free if r.mode_file is not None],
            "junk": [r for r in free if r.stdio],
            "session expiry": [r for r in free if r.owner == "soak"],
        }
        if not self.deck:
            self.deck = [cls for cls, weight in CLASSES.items() for _ in range(weight)]
            self.rng.shuffle(self.deck)
        for index, cls in enumerate(self.deck):
            if targets[cls]:
                del self.deck[index]
                return cls, self._least_hit(cls, targets[cls])
        return None

    def _least_hit(self, cls: str, replicas: list[Replica]) -> Replica:
        """One of the replicas this class has hit least so far, at random: every replica
        gets its share of every class."""
        hits = {r.tag: 0 for r in replicas}
        for fault in self.faults:
            if fault.cls == cls and fault.target in hits:
                hits[fault.target] += 1
        fewest = min(hits.values())
        return self.rng.choice([r for r in replicas if hits[r.tag] == fewest])

    async def _run(self, cls: str, replica: Replica) -> None:
        fault = Fault(len(self.faults) + 1, cls, replica.tag, self.clock())
        self.faults.append(fault)
        self.active.add(replica.tag)
        actions: dict[str, Callable[[Replica, Fault], Awaitable[None]]] = {
            "kill": self._kill,
            "hang": self._hang,
            "slow": self._slow,
            "junk": self._junk,
            "session expiry": self._expire,
        }
        try:
            async with asyncio.timeout(FAULT_BOUND):
                await actions[cls](replica, fault)
        except TimeoutError:
            fault.recovered = False
            fault.note += f"; not undone within {FAULT_BOUND:g} s"
        except asyncio.CancelledError:
            fault.note += "; the soak was stopped"
            raise
        except Exception as exc:  # a fault that could not be done is logged, not fatal
            fault.recovered = False
            fault.note += f"; failed: {exc!r}"
        finally:
            fault.end = self.clock()
            self.active.discard(replica.tag)
            self.say(f"fault {fault.line()}")

    def _pids(self, replica: Replica) -> set[int]:
        if replica.owner == "soak":
            return self.topology.own[replica.tag].pids()
        return pids_with_arg(replica.match)

    async def _kill(self, replica: Replica, fault: Fault) -> None:
        if replica.owner == "soak":
            own = self.topology.own[replica.tag]
            own.kill()
            down = self.rng.uniform(1, 6)
            await asyncio.sleep(down)
            own.start()
            await own.listening()
            fault.note = f"down {down:.1f} s, restarted by the soak"
            return
        killed = self._pids(replica)
        if not killed:
            fault.note = "no process (already down)"
            return
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        fault.note = await self._respawned(replica, killed)

    async def _respawned(self, replica: Replica, killed: set[int]) -> str:
        begun = self.clock()
        while self.clock() - begun < RESPAWN_TIMEOUT:
            if self._pids(replica) - killed:
                return f"respawned by the gateway after {self.clock() - begun:.1f} s"
            await asyncio.sleep(0.25)
        raise TimeoutError  # reported as not undone

    async def _hang(self, replica: Replica, fault: Fault) -> None:
        stopped = self._pids(replica)
        if not stopped:
            fault.note = "no process (already down)"
            return
        hold = self.rng.uniform(3, 10)
        fault.note = f"SIGSTOP for {hold:.1f} s"
        _signal(stopped, signal.SIGSTOP)
        try:
            await asyncio.sleep(hold)
        finally:
            _signal(stopped, signal.SIGCONT)

    async def _mode(self, replica: Replica, fault: Fault, mode: str) -> None:
        assert replica.mode_file is not None
        hold = self.rng.uniform(5, 15)
        fault.note = f"{mode} for {hold:.1f} s"
        replica.mode_file.write_text(mode)
        try:
            await asyncio.sleep(hold)
        finally:
            replica.mode_file.write_text("ok")

    async def _slow(self, replica: Replica, fault: Fault) -> None:
        await self._mode(replica, fault, f"slow:{self.rng.choice([500, 1500, 5000])}")

    async def _junk(self, replica: Replica, fault: Fault) -> None:
        await self._mode(replica, fault, "junk")

    async def _expire(self, replica: Replica, fault: Fault) -> None:
        own = self.topology.own[replica.tag]
        own.kill()
        own.start()
        await own.listening()
        fault.note = "restarted on its port: every session it had is gone"

    async def _drops(self, until: float) -> None:
        while (now := self.clock()) < until:
            await asyncio.sleep(min(self.rng.uniform(*DROP_GAP), until - now))
            if self.clock() < until:
                await self._drop()

    async def _drop(self) -> None:
        """A client that leaves mid-call: its connection closed, its session never deleted."""
        fault = Fault(len(self.faults) + 1, DROP, "http", self.clock())
        self.faults.append(fault)
        after = self.rng.uniform(0.3, 2.0)
        try:
            async with asyncio.timeout(30):
                fault.note = await _leave_mid_call(self.http_url, after)
        except Exception as exc:  # the drop itself failing is logged, not fatal
            fault.recovered = False
            fault.note = f"could not drop: {exc!r}"
        finally:
            fault.end = self.clock()
            self.say(f"fault {fault.line()}")


def _signal(pids: set[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


async def _leave_mid_call(url: str, after: float) -> str:
    """Open a session, start the long call, read for `after` seconds, close the socket."""
    async with httpx.AsyncClient(timeout=10) as http:
        started = await post_initialize(http, url, client="soak-dropping-client")
        session = started.headers.get("mcp-session-id")
        if started.status_code != 200 or session is None:
            return f"initialize answered HTTP {started.status_code}, no session: not dropped"
        headers = session_headers(session)
        await http.post(url, json=INITIALIZED, headers=headers)
        name, arguments = LONG_CALL
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        params["_meta"] = {"progressToken": "soak-drop"}
        request = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}
        read, ended = 0, False
        async with http.stream("POST", url, json=request, headers=headers) as response:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(after):
                    async for chunk in response.aiter_bytes():
                        read += len(chunk)
                    ended = True
            status = response.status_code
        # Leaving the stream unread closes its connection: the call is abandoned.
    if ended:
        return f"the call had ended (HTTP {status}, {read} bytes) before the client left"
    return f"left mid-call after {after:.1f} s (HTTP {status}, {read} bytes read), no DELETE"
