"""Soak: mixed calls through the gateway for minutes while faults are injected at random.

    python bench/soak.py [--minutes 15] [--seed N] [--rate 16] [--markdown docs/soak.md]

Two gateways (`mcp-agg serve`, one over stdio, one over streamable HTTP) front stdio
replicas, HTTP replicas and the third-party `mcp-server-everything`; client sessions on
both call a mix of idempotent and non-idempotent tools while backends are killed, hung,
slowed, made to print junk, restarted under their sessions, and clients drop mid-call.
It prints calls ok and failed by kind and fault class, idempotent calls lost, the
gateways' RSS, fds and CPU, and the processes they left. Not a test: nothing here runs
in CI. What it measures and the latest figures: docs/soak.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import random
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fastmcp import Client

from harness import Env, Front, Reaper, UncappedHttpTransport, open_front
from report import REPO, machine_info, source_state, write_markdown

# The soak reuses the end-to-end tests' helpers and backends (tests/e2e): the soak_*
# modules import them, so the repository root goes on the path before they are imported.
sys.path.insert(0, str(REPO))

from soak_faults import Injector
from soak_load import CALL_TIMEOUT, Load, expected_names
from soak_procs import Tree, Usage, usage
from soak_report import (
    GRACE,
    Findings,
    count_duplicates,
    criteria,
    judge,
    log_kinds,
    summary,
)
from soak_setup import FRONTS, GATEWAY, SERVERS, Topology, build

MARKERS = (
    "<!-- soak:results:begin (written by bench/soak.py; edits inside are overwritten) -->",
    "<!-- soak:results:end -->",
)
#: Client sessions and the workers calling on each: one stdio session, several HTTP ones.
STDIO_WORKERS = 3
HTTP_SESSIONS = 4
HTTP_WORKERS = 2
#: Seconds to wait for every tool to be listed through a gateway.
LIST_TIMEOUT = 120.0
#: Seconds between two readings of the gateways' RSS and fds (process trees: every second).
SAMPLE_EVERY = 2.0


class GatewayDied(RuntimeError):
    """A gateway process ended during the run."""


class Progress:
    """Lines on stderr stamped with seconds since the soak began."""

    def __init__(self) -> None:
        #: When the soak began, and the zero of the stamps (moved to when calls begin).
        self.began = self.started = time.monotonic()
        self.lines: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        line = f"[{self.elapsed():7.1f}s] {message}"
        self.lines.append(line)
        print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Plan:
    """When things happen, in seconds since the calls began."""

    total: float
    warmup: float
    faults_until: float

    @classmethod
    def of(cls, minutes: float) -> Plan:
        total = minutes * 60
        warmup = min(max(0.1 * total, 10.0), 30.0)
        tail = min(max(0.15 * total, 15.0), 45.0)
        return cls(total, warmup, max(total - tail, warmup))


@dataclass(slots=True)
class Watch:
    """The gateways' processes: resource readings and every process seen under them."""

    pids: dict[str, int]
    trees: dict[str, Tree]
    reaper: Reaper
    clock: Callable[[], float]
    usage: dict[str, list[Usage]] = field(default_factory=dict)
    snapshots: dict[str, list[Usage | None]] = field(default_factory=dict)
    died: list[str] = field(default_factory=list)

    def snapshot(self) -> None:
        for front, pid in self.pids.items():
            self.snapshots.setdefault(front, []).append(usage(pid, self.clock()))

    async def run(self, done: asyncio.Event) -> None:
        """Sample until `done`; a gateway that ends is reported and stops the run."""
        ticks = 0
        while not done.is_set():
            for front, pid in self.pids.items():
                self.trees[front].sample()
                self.reaper.note_tree(pid)
                reading = usage(pid, self.clock())
                if reading is None:
                    self.died.append(f"the {front} gateway ended at {self.clock():.1f} s")
                    raise GatewayDied(self.died[-1])
                if ticks % int(SAMPLE_EVERY) == 0:
                    self.usage.setdefault(front, []).append(reading)
            ticks += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0)


async def _listed(client: Client[Any], what: str) -> None:
    """Return once every tool of the mix is listed (backends may connect late)."""
    missing: set[str] = set()
    try:
        async with asyncio.timeout(LIST_TIMEOUT):
            while True:
                missing = expected_names() - {tool.name for tool in await client.list_tools()}
                if not missing:
                    return
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise RuntimeError(f"{what}: {sorted(missing)} not listed") from None


@contextlib.asynccontextmanager
async def _http_clients(url: str, count: int) -> AsyncIterator[list[Client[Any]]]:
    """`count` more client sessions on the HTTP gateway, closed (bounded) on the way out."""
    clients: list[Client[Any]] = []
    try:
        for _ in range(count):
            client: Client[Any] = Client(
                UncappedHttpTransport(url), timeout=CALL_TIMEOUT, init_timeout=LIST_TIMEOUT
            )
            await client.__aenter__()
            clients.append(client)
        yield clients
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(15):
                    await client.__aexit__(None, None, None)


@dataclass(slots=True)
class Run:
    """One soak: its settings, what it started, what it recorded."""

    args: argparse.Namespace
    workdir: Path
    reaper: Reaper
    say: Progress
    topology: Topology | None = None
    load: Load | None = None
    injector: Injector | None = None
    watch: Watch | None = None
    left: dict[str, list[str]] = field(default_factory=dict)
    trees: dict[str, Tree] = field(default_factory=dict)
    swept: int = 0
    #: What the verdict must also say (an interrupted run).
    notes: list[str] = field(default_factory=list)

    def env(self, front: str, log: TextIO) -> Env:
        assert self.topology is not None
        return Env(
            self.workdir,
            log,
            self.reaper,
            say=self.say,
            servers=self.topology.configs[front],
            before_kill=self._check_left,
        )

    def _check_left(self, path: str, pids: list[int]) -> None:
        """What the gateway left running once it stopped (a few seconds to settle)."""
        front = path.removeprefix("agg-")
        tree = self.trees.get(front)
        if tree is None:
            return
        deadline = time.monotonic() + 5
        while (left := tree.alive()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.left[front] = left
        self.say(f"{front} gateway stopped; processes left: {len(left)}")

    async def main(self) -> None:
        with contextlib.ExitStack() as logs:
            log = {name: logs.enter_context((self.workdir / f"{name}.log").open("a"))
                   for name in ("backends", "gateway-stdio", "gateway-http")}  # fmt: skip
            self.topology = build(self.workdir, log["backends"], self.reaper)
            own = list(self.topology.own.values())
            try:
                for backend in own:
                    backend.start()
                await asyncio.gather(*(backend.listening() for backend in own))
                self.say("soak's own backends listen: web-2, everything")
                await self._with_gateways(log["gateway-stdio"], log["gateway-http"])
            finally:
                for backend in own:
                    await backend.stop()

    async def _with_gateways(self, stdio_log: TextIO, http_log: TextIO) -> None:
        async with (
            open_front("agg-stdio", 0, self.env("stdio", stdio_log)) as stdio,
            open_front("agg-http", 0, self.env("http", http_log)) as http,
        ):
            assert http.url is not None
            self.trees = {"stdio": Tree(stdio.pid), "http": Tree(http.pid)}
            async with _http_clients(http.url, HTTP_SESSIONS - 1) as extra:
                clients = {"stdio": [stdio.sessions[0].client]}
                clients["http"] = [http.sessions[0].client, *extra]
                for front, mine in clients.items():
                    await asyncio.gather(*(_listed(c, f"{front} gateway") for c in mine))
                self.say("every tool listed through both gateways")
                await self._soak(stdio, http, clients)

    async def _soak(self, stdio: Front, http: Front, clients: dict[str, list[Client[Any]]]) -> None:
        assert self.topology is not None
        assert http.url is not None
        plan = Plan.of(self.args.minutes)
        workers = STDIO_WORKERS + HTTP_SESSIONS * HTTP_WORKERS
        topology = self.topology
        replicas = {
            front: {
                server: {r.tag for r in topology.replicas_of(front, server)} for server in SERVERS
            }
            for front in FRONTS
        }
        self.load = load = Load(
            time.monotonic(), plan.total, self.args.rate / workers, replicas, self.args.seed
        )
        self.say.started = load.started  # from here on, times are those of the figures
        self.say("calls begin")
        rng = random.Random(self.args.seed)
        self.injector = Injector(self.topology, http.url, load.now, rng, self.say)
        pids = {"stdio": stdio.pid, "http": http.pid}
        self.watch = Watch(pids, self.trees, self.reaper, load.now)
        done = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.watch.run(done))
                calls = [
                    group.create_task(load.worker(client, front, f"{front}-{i}-{w}"))
                    for front, mine in clients.items()
                    for i, client in enumerate(mine)
                    for w in range(STDIO_WORKERS if front == "stdio" else HTTP_WORKERS)
                ]
                await self._phases(plan)
                await asyncio.gather(*calls)
                done.set()
        except* GatewayDied as dead:
            self.say(f"stopping early: {dead.exceptions[0]}")

    async def _phases(self, plan: Plan) -> None:
        assert self.load is not None
        assert self.injector is not None
        assert self.watch is not None
        load = self.load
        await asyncio.sleep(max(plan.warmup - load.now(), 0))
        self.watch.snapshot()
        until = f"faults until {plan.faults_until:.0f} s, calls until {plan.total:.0f} s"
        self.say(f"warm-up over: {until}")
        await self.injector.run(plan.faults_until)
        self.say("faults over: every one undone; calls go on without faults")
        await asyncio.sleep(max(plan.total - load.now(), 0))
        self.watch.snapshot()
        self.say("calls stop (those in flight finish)")

    def dump(self) -> None:
        """Every call and fault into the workdir, for a closer look than the report's."""
        if self.load is not None:
            lines = ["start\tend\tfront\ttool\tok\treplica\terror"]
            lines += [
                f"{c.start:.3f}\t{c.end:.3f}\t{c.front}\t{c.kind.exposed}\t{c.ok}\t"
                f"{c.replica or ''}\t{(c.error or '').replace(chr(10), ' ')}"
                for c in self.load.records
            ]
            (self.workdir / "calls.tsv").write_text("\n".join(lines) + "\n")
        if self.injector is not None:
            faults = "".join(f"{fault.line()}\n" for fault in self.injector.faults)
            (self.workdir / "faults.log").write_text(faults)

    def findings(self) -> Findings | None:
        if self.load is None or self.injector is None or self.watch is None:
            return None
        assert self.topology is not None
        warmup = Plan.of(self.args.minutes).warmup
        judged, warm = judge(self.load.records, self.injector.faults, self.topology, warmup)
        snapshots = {}
        for front in FRONTS:
            taken = self.watch.snapshots.get(front, [])
            snapshots[front] = (taken[0] if taken else None, taken[1] if len(taken) > 1 else None)
        return Findings(
            judged,
            warm,
            self.injector.faults,
            self.watch.usage,
            snapshots,
            self.left,
            {front: len(tree.seen) for front, tree in self.trees.items()},
            count_duplicates(self.topology.counts),
            [*self.watch.died, *self.notes],
            {front: log_kinds(self.workdir / f"gateway-{front}.log") for front in FRONTS},
            self.swept,
        )


def _setup_notes(args: argparse.Namespace, plan: Plan) -> str:
    workers = STDIO_WORKERS + HTTP_SESSIONS * HTTP_WORKERS
    settings = " ".join(line for line in GATEWAY.splitlines() if "=" in line)
    return "\n".join(
        [
            f"- **Load**: {args.rate:g} calls/s in all, from {workers} workers: {STDIO_WORKERS}"
            f" on one stdio session, {HTTP_WORKERS} on each of {HTTP_SESSIONS} HTTP sessions;"
            f" seed {args.seed}",
            f"- **Timeline**: {plan.warmup:.0f} s warm-up (no faults, not counted), faults until"
            f" {plan.faults_until:.0f} s, calls until {plan.total:.0f} s; a replica counts as"
            f" disturbed until {GRACE:g} s after its fault was undone",
            f"- **Gateway settings** (both): `{settings}`",
            f"- **Machine load** (1-minute load average, at start / at end): {args.load_start}"
            f" / {_loadavg()}; the machine was shared with other work",
        ]
    )


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/loadavg").read_text().split()[0]
    return "unknown"


def _report(
    run: Run, started: datetime.datetime, source: str, took: float
) -> tuple[str, bool] | None:
    """The findings as Markdown, and whether every criterion of the verdict holds."""
    findings = run.findings()
    if findings is None:
        return None
    args = run.args
    command = shlex.join(["python", "bench/soak.py", *sys.argv[1:]])
    mode = f"soak, {args.minutes:g} min"
    info = machine_info(mode, command, took, started, source)
    block = "\n\n".join([info, _setup_notes(args, Plan.of(args.minutes)), summary(findings)])
    return block, all(ok for ok, _ in criteria(findings))


async def _run(run: Run) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await run.main()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="how long calls go on")
    parser.add_argument("--seed", type=int, default=14, help="seeds the faults and the mix")
    parser.add_argument("--rate", type=float, default=16.0, help="calls per second, in all")
    parser.add_argument("--markdown", type=Path, help="write the figures into this file")
    args = parser.parse_args(argv)
    if args.minutes < 1 or not 0 < args.rate <= 50:
        parser.error("--minutes must be at least 1 and --rate between 0 and 50")
    args.load_start = _loadavg()
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    say = Progress()
    started = datetime.datetime.now(datetime.UTC)
    source, _ = source_state()
    reaper = Reaper()
    workdir = Path(tempfile.mkdtemp(prefix="mcp-agg-soak-"))
    run = Run(args, workdir, reaper, say)
    interrupted = False
    try:
        asyncio.run(_run(run))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted: everything it started is stopped")
        interrupted = True
        run.notes.append(f"the run was interrupted {say.elapsed():.0f} s after the calls began")
    finally:
        run.swept = reaper.sweep()
        if run.swept:
            say(f"{run.swept} process(es) were still running below the soak: killed")
        (workdir / "soak.log").write_text("\n".join(say.lines) + "\n")
        run.dump()
        say(f"logs (gateways, backends, faults) are in {workdir}")
    reported = _report(run, started, source, time.monotonic() - say.began)
    if reported is None:
        return 130 if interrupted else 1
    block, held = reported
    print(block)
    if args.markdown and not interrupted:
        write_markdown(args.markdown, block, markers=MARKERS, title="Soak")
        say(f"wrote {args.markdown}")
    return 130 if interrupted else 0 if held else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
