"""Benchmark: mcp-agg against talking to the backend directly, and against FastMCP's proxies.

    python bench/run.py [--quick] [--markdown docs/benchmarks.md] [--paths direct,agg-stdio]

One process tree, one run: every path is measured on the same machine in the same minutes,
and every figure is also given as a ratio to the direct path measured in this run, since
absolute figures say little across machines. What each row measures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import datetime
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path

from fleet import FLEET_PATHS, fleet_url, haproxy_program, sessions_at
from harness import (
    BENCH,
    HTTP_PATHS,
    MAGG_PATHS,
    PATHS,
    Env,
    Reaper,
    cpu_seconds,
    open_front,
    peak_rss_mib,
)
from report import (
    Row,
    Table,
    machine_info,
    mib,
    ms,
    per_second,
    secs,
    source_state,
    write_markdown,
)
from workloads import (
    blob_latency,
    median,
    percentile,
    repeated_lookup,
    sequential_echo,
    throughput,
)

#: Backends behind every gateway in the call rows, so each one really aggregates (FastMCP's
#: mcpServers proxy with a single server is a plain one-backend proxy); calls go to b1.
FRONTED = 2
IN_FLIGHT = 16
HTTP_SESSIONS = 4
#: Calls in flight in the fleet rows' throughput.
FLEET_IN_FLIGHT = (16, 64)
SLOW = "fastmcp-mcpservers"
#: The paths a client reaches without a gateway: the baselines of the two call tables.
DIRECT_PATHS = ("direct", "direct-http")
#: The mcp-agg fronts: the cache-hit row starts each again with b1's `lookup` cached.
AGG_PATHS = ("agg-stdio", "agg-http")
#: Columns of the "Calls" and "Startup and memory" tables (ratios to direct stdio); the
#: "HTTP front" table has HTTP_PATHS (ratios to direct http).
STDIO_TABLE = ("direct", "agg-stdio", "agg-http", "fastmcp-mounted", "magg", SLOW)
#: How the magg columns run it.
MAGG_NOTE = (
    "magg runs from a venv of its own (`make bench-magg`: it needs Python 3.12 or later and"
    " fastmcp < 4; the versions are above), as `magg serve`, or `magg serve --http` for magg"
    " http, on a config.json of the same backends as the other fronts under the prefixes"
    " b1, b2, ... (so its tools are `b1_echo`, ... as through mcp-agg), read-only, its config"
    " reloading off and its log at WARNING; it lists its own `magg_*` tools beside them."
)
#: Where `make bench-magg` installs magg's program.
MAGG = BENCH.parent / ".venv-magg" / "bin" / "magg"
#: The start of a gateway with this many backends or more gets a peak RSS row.
RSS_MIN_BACKENDS = 5


@dataclass(frozen=True, slots=True)
class Plan:
    """Call counts; `slow_*` apply to FastMCP's mcpServers proxy, seconds per call."""

    mode: str
    #: Rounds of the call rows: each round starts every path afresh, the paths taking turns.
    rounds: int
    warmup: int
    seq_calls: int
    tp_warmup: int
    tp_calls: int
    blob_kb: int
    blob_calls: int
    slow_warmup: int
    slow_calls: int
    startup_backends: tuple[int, ...]
    startup_runs: int
    #: The most backends the mcpServers proxy is started with (it starts them all per request).
    slow_startup_max: int
    rss_calls: int
    slow_rss_calls: int
    #: Let each front stop by itself before its process groups are killed (else kill at once).
    graceful: bool
    #: Start the cache-hit row's mcp-agg fronts apart, so that the other rows measure a
    #: gateway without a cache; else (quicker) the call rows' fronts cache `lookup` too.
    cache_apart: bool


# Call counts are per round; the mcpServers proxy takes part in the first round only.
FULL = Plan("full", 3, 30, 200, 64, 1000, 1024, 10, 1, 5, (1, 5, 20), 3, 20, 5, 1, True, True)
QUICK = Plan("quick", 1, 5, 30, 16, 160, 64, 5, 0, 1, (1, 5), 1, 1, 3, 0, False, False)


class Progress:
    """One line per finished measurement on stderr, so a long run shows it is alive."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass(slots=True)
class Rows:
    seq_p50: Row
    seq_p99: Row
    tp_one: Row
    tp_multi: Row
    blob: Row
    cache_hit: Row
    cpu: Row
    backend_cpu: Row
    first_answer: Row
    startup: dict[int, Row]
    rss: dict[int, Row]


def _rows(plan: Plan) -> Rows:
    rounds = f"{plan.rounds} rounds of " if plan.rounds > 1 else ""
    median_of = f", median of {plan.rounds} rounds" if plan.rounds > 1 else ""
    return Rows(
        seq_p50=Row(f"echo latency p50 ({rounds}{plan.seq_calls} sequential calls)", ms),
        seq_p99=Row("echo latency p99", ms),
        tp_one=Row(f"throughput, {IN_FLIGHT} in flight, 1 session{median_of}", per_second),
        tp_multi=Row(
            f"throughput, {IN_FLIGHT} in flight, {HTTP_SESSIONS} sessions ‡{median_of}", per_second
        ),
        blob=Row(f"blob({plan.blob_kb}) latency, median of {rounds}{plan.blob_calls} calls", ms),
        cache_hit=Row(f"cache hit: `lookup` p50 ({rounds}{plan.seq_calls} identical calls) ¶", ms),
        cpu=Row("CPU per `echo` call, the front process ◊", ms),
        backend_cpu=Row("CPU per `echo` call, the backends behind it ◊", ms),
        first_answer=Row(f"start → `initialize` answered, 1 backend{_of_runs(plan)}", secs),
        startup={
            n: Row(f"start → complete tools/list, {_count(n, 'backend')}{_of_runs(plan)}", secs)
            for n in plan.startup_backends
        },
        rss={
            n: Row(f"peak RSS (VmHWM) of the front process, {n} backends §", mib)
            for n in plan.startup_backends
            if n >= RSS_MIN_BACKENDS
        },
    )


def _of_runs(plan: Plan) -> str:
    return f", median of {plan.startup_runs} runs" if plan.startup_runs > 1 else ""


@dataclass(slots=True)
class CallSamples:
    """Raw figures of the call rows, pooled over rounds, per path."""

    seq: dict[str, list[float]] = field(default_factory=dict)
    tp_one: dict[str, list[float]] = field(default_factory=dict)
    tp_multi: dict[str, list[float]] = field(default_factory=dict)
    blob: dict[str, list[float]] = field(default_factory=dict)
    lookup: dict[str, list[float]] = field(default_factory=dict)
    #: CPU seconds over the measured sequential calls, and those calls, per round.
    cpu: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    backend_cpu: dict[str, list[tuple[float, int]]] = field(default_factory=dict)


async def _guarded(
    rows: list[Row], path: str, what: str, log: Progress, step: Awaitable[None]
) -> bool:
    """Run one path's measurement; a failure marks its cells and the run goes on."""
    try:
        await step
    except Exception as exc:  # any library failure: mark the cells, report, go on
        for row in rows:
            row.failed.add(path)
        log(f"{(PATHS | FLEET_PATHS)[path]}: {what} FAILED: {exc!r}")
        return False
    return True


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds the processes have used (one that has gone counts as none)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


async def _measure_calls(
    plan: Plan, path: str, env: Env, got: CallSamples, log: Progress, tag: str
) -> None:
    """One round of the call rows for one path: sequential latency and the CPU it took,
    throughput, large result, and for a direct path the uncached `lookup` (for mcp-agg,
    unless `plan.cache_apart`, the cached one)."""
    slow = path == SLOW
    name = f"{PATHS[path]}{tag}"
    cache = path in AGG_PATHS and not plan.cache_apart
    fronted = 1 if path in DIRECT_PATHS else FRONTED
    async with open_front(path, fronted, env, cache=cache) as front:
        session = front.sessions[0]
        await session.resolve_names()
        seq_calls = plan.slow_calls if slow else plan.seq_calls
        warmup = plan.slow_warmup if slow else plan.warmup
        await sequential_echo(session, 0, warmup)
        # The mcpServers proxy starts its backends per request: none to read beforehand.
        backends = [] if slow or path in DIRECT_PATHS else front.backend_pids()
        cpu_before = (_cpu_of([front.pid]), _cpu_of(backends))
        samples = await sequential_echo(session, seq_calls, 0)
        cpu_after = (_cpu_of([front.pid]), _cpu_of(backends))
        got.seq.setdefault(path, []).extend(samples)
        log(f"{name}: echo p50 {ms(percentile(samples, 50))}")
        if not slow:
            used = cpu_after[0] - cpu_before[0]
            got.cpu.setdefault(path, []).append((used, seq_calls))
            if backends:
                got.backend_cpu.setdefault(path, []).append(
                    (cpu_after[1] - cpu_before[1], seq_calls)
                )
            log(f"{name}: CPU per echo call {ms(used / seq_calls)}")
        calls = plan.slow_calls if slow else plan.tp_calls
        tp_warmup = 0 if slow else plan.tp_warmup
        rate = await throughput([session], calls, min(IN_FLIGHT, calls), tp_warmup)
        got.tp_one.setdefault(path, []).append(rate)
        log(f"{name}: throughput {per_second(rate)}")
        if front.url is not None:
            extra = [await front.new_session() for _ in range(HTTP_SESSIONS - 1)]
            rate = await throughput([session, *extra], calls, IN_FLIGHT, tp_warmup)
            got.tp_multi.setdefault(path, []).append(rate)
            log(f"{name}: {HTTP_SESSIONS}-session throughput {per_second(rate)}")
        blob_calls = plan.slow_calls if slow else plan.blob_calls
        samples = await blob_latency(session, plan.blob_kb, blob_calls, min(warmup, 1))
        got.blob.setdefault(path, []).extend(samples)
        log(f"{name}: blob median {ms(median(samples))}")
        if path in DIRECT_PATHS or cache:
            samples = await repeated_lookup(session, plan.seq_calls, plan.warmup, cached=cache)
            got.lookup.setdefault(path, []).extend(samples)
            log(f"{name}: {'cache hit' if cache else 'lookup'} p50 {ms(percentile(samples, 50))}")


async def _measure_cache(
    plan: Plan, path: str, env: Env, got: CallSamples, log: Progress, tag: str
) -> None:
    """One round of the cache-hit row for an mcp-agg front that caches b1's `lookup`:
    the same call again and again, every answer checked to be the first one's."""
    async with open_front(path, FRONTED, env, cache=True) as front:
        session = front.sessions[0]
        await session.resolve_names()
        samples = await repeated_lookup(session, plan.seq_calls, plan.warmup, cached=True)
        got.lookup.setdefault(path, []).extend(samples)
        log(f"{PATHS[path]}{tag}: cache hit p50 {ms(percentile(samples, 50))}")


async def _call_rows(plan: Plan, paths: list[str], env: Env, rows: Rows, log: Progress) -> bool:
    """Rows 1-3: `plan.rounds` rounds, in each a fresh front per path, the paths in turn.

    Latency samples are pooled over the rounds; throughput is the median of the rounds'
    rates. Taking turns spreads the machine's slow spells over every path alike.
    """
    ok = True
    got = CallSamples()
    for round_ in range(plan.rounds):
        tag = f" (round {round_ + 1}/{plan.rounds})" if plan.rounds > 1 else ""
        for path in paths:
            if path == SLOW and round_ > 0:
                continue
            targets = [rows.seq_p50, rows.seq_p99, rows.tp_one, rows.blob, rows.cpu]
            if path in HTTP_PATHS:
                targets.append(rows.tp_multi)
            if path in DIRECT_PATHS or (path in AGG_PATHS and not plan.cache_apart):
                targets.append(rows.cache_hit)
            if path not in DIRECT_PATHS:
                targets.append(rows.backend_cpu)
            step = _measure_calls(plan, path, env, got, log, tag)
            ok &= await _guarded(targets, path, "call rows", log, step)
            if path in AGG_PATHS and plan.cache_apart:
                step = _measure_cache(plan, path, env, got, log, tag)
                ok &= await _guarded([rows.cache_hit], path, "cache-hit row", log, step)
    for path, samples in got.seq.items():
        rows.seq_p50.values[path] = percentile(samples, 50)
        rows.seq_p99.values[path] = percentile(samples, 99)
    for path, samples in got.lookup.items():
        if path not in rows.cache_hit.failed:
            rows.cache_hit.values[path] = percentile(samples, 50)
    for row, spent in ((rows.cpu, got.cpu), (rows.backend_cpu, got.backend_cpu)):
        for path, pairs in spent.items():
            if path not in row.failed:
                row.values[path] = sum(cpu for cpu, _ in pairs) / sum(n for _, n in pairs)
    for row, rates in ((rows.tp_one, got.tp_one), (rows.tp_multi, got.tp_multi)):
        for path, values in rates.items():
            row.values[path] = median(values)
    for path, samples in got.blob.items():
        rows.blob.values[path] = median(samples)
    return ok


async def _measure_startup(
    path: str, backends: int, env: Env, log: Progress, rss_calls: int | None,
    out: tuple[list[float], list[float]], rss: Row | None,
) -> None:  # fmt: skip
    """Seconds from spawning the front to its `initialize` answer and to a complete listing
    into `out`; then, with `rss`, its VmHWM."""
    started = time.perf_counter()
    async with open_front(path, backends, env, ready=False) as front:
        out[0].append(time.perf_counter() - started)
        await front.list_complete()
        elapsed = time.perf_counter() - started
        out[1].append(elapsed)
        log(
            f"{PATHS[path]}: {_count(backends, 'backend')}: initialize answered in"
            f" {secs(out[0][-1])}, listed in {secs(elapsed)}"
        )
        if rss_calls is None or rss is None:
            return
        session = front.sessions[0]
        if rss_calls:
            await session.resolve_names()
        for _ in range(rss_calls):
            await session.call("echo", text="rss")
        rss.values[path] = peak_rss_mib(front.pid)
        log(f"{PATHS[path]}: VmHWM {mib(rss.values[path])}")


async def _startup_rows(plan: Plan, paths: list[str], env: Env, rows: Rows, log: Progress) -> bool:
    """Start each front with N backends: to its `initialize` answer (1 backend) and to a
    complete listing; RSS on the last run with 5 and with the most backends.

    The paths take turns within each run, so a slow drift of the machine hits all alike.
    """
    ok = True
    for backends in plan.startup_backends:
        row = rows.startup[backends]
        rss = rows.rss.get(backends)
        first = rows.first_answer if backends == 1 else None
        times: dict[str, tuple[list[float], list[float]]] = {path: ([], []) for path in paths}
        for run in range(plan.startup_runs):
            for path in paths:
                if path == SLOW and backends > plan.slow_startup_max:
                    continue
                rss_calls: int | None = None
                if rss is not None and run == plan.startup_runs - 1:
                    rss_calls = plan.slow_rss_calls if path == SLOW else plan.rss_calls
                targets = [row] + [r for r in (rss, first) if r is not None]
                step = _measure_startup(path, backends, env, log, rss_calls, times[path], rss)
                ok &= await _guarded(targets, path, f"startup ({backends})", log, step)
        for path, (answered, listed) in times.items():
            if listed and path not in row.failed:
                row.values[path] = median(listed)
            if first is not None and answered and path not in first.failed:
                first.values[path] = median(answered)
    return ok


@dataclass(slots=True)
class FleetRows:
    seq_p50: Row
    hop: Row
    throughput: dict[int, Row]
    #: Why the rows are empty, when they are (HAProxy missing).
    missing: str = ""


def _fleet_rows_empty(plan: Plan) -> FleetRows:
    return FleetRows(
        seq_p50=Row(f"echo latency p50 ({plan.seq_calls} sequential calls)", ms, ref="replica"),
        hop=Row("added p50 of the load-balancer hop", ms, ref=None),
        throughput={
            n: Row(f"throughput, {n} in flight", per_second, ref="replica") for n in FLEET_IN_FLIGHT
        },
    )


async def _fleet_rows(plan: Plan, env: Env, log: Progress) -> tuple[FleetRows, bool]:
    """The fleet table: one replica direct, HAProxy + 1 replica (same replica, same run:
    the hop's own cost), HAProxy + 2 replicas."""
    rows = _fleet_rows_empty(plan)
    haproxy = haproxy_program()
    if haproxy is None:
        rows.missing = "haproxy is not installed (apt-get install haproxy): no fleet rows"
        log(rows.missing)
        return rows, True
    every = [rows.seq_p50, rows.hop, *rows.throughput.values()]

    async def one_replica() -> None:
        async with (
            fleet_url(haproxy, 1, FRONTED, env) as fleet,
            sessions_at(fleet.replica_url, HTTP_SESSIONS) as direct,
            sessions_at(fleet.haproxy_url, HTTP_SESSIONS) as balanced,
        ):
            # Halves in turn, so a slow spell of the machine hits both alike.
            half = plan.seq_calls // 2
            samples: dict[str, list[float]] = {"replica": [], "haproxy-1": []}
            for _ in range(2):
                for path, session in (("replica", direct[0]), ("haproxy-1", balanced[0])):
                    samples[path] += await sequential_echo(session, half, plan.warmup)
            for path, got in samples.items():
                rows.seq_p50.values[path] = percentile(got, 50)
                log(f"fleet {FLEET_PATHS[path]}: echo p50 {ms(rows.seq_p50.values[path])}")
            added = rows.seq_p50.values["haproxy-1"] - rows.seq_p50.values["replica"]
            rows.hop.values["haproxy-1"] = added
            for n, row in rows.throughput.items():
                for path, sessions in (("replica", direct), ("haproxy-1", balanced)):
                    rate = await throughput(sessions, plan.tp_calls, n, plan.tp_warmup)
                    row.values[path] = rate
                    log(f"fleet {FLEET_PATHS[path]}: {n} in flight {per_second(rate)}")

    async def two_replicas() -> None:
        async with (
            fleet_url(haproxy, 2, FRONTED, env) as fleet,
            sessions_at(fleet.haproxy_url, HTTP_SESSIONS) as balanced,
        ):
            for n, row in rows.throughput.items():
                rate = await throughput(balanced, plan.tp_calls, n, plan.tp_warmup)
                row.values["haproxy-2"] = rate
                log(f"fleet {FLEET_PATHS['haproxy-2']}: {n} in flight {per_second(rate)}")

    ok = await _guarded(every, "haproxy-1", "fleet, 1 replica", log, one_replica())
    if not ok:
        rows.seq_p50.failed.add("replica")
        for row in rows.throughput.values():
            row.failed.add("replica")
    two = list(rows.throughput.values())
    ok &= await _guarded(two, "haproxy-2", "fleet, 2 replicas", log, two_replicas())
    return rows, ok


def _fleet_table(plan: Plan, rows: FleetRows) -> Table:
    notes = [
        "Each cell: the figure, then (in brackets) the figure ÷ the direct replica's in the"
        " same row and run.",
        "Replicas are `mcp-agg serve --transport http`, each fronting"
        f" {FRONTED} backends as above; HAProxy runs deploy/haproxy.cfg as shipped (round"
        " robin, /readyz checks), its unused slots marked down before measuring. Clients"
        " speak 2026-07-28 (context in every request: no sticky sessions);"
        f" {HTTP_SESSIONS} client sessions share the workers. Throughput calls"
        f" `sleep_ms(0)` {plan.tp_calls} times after {plan.tp_warmup} warm-up calls; the"
        f" latency row interleaves the direct and HAProxy paths in halves, after"
        f" {_count(plan.warmup, 'warm-up call')} each.",
        "Added p50 of the load-balancer hop: HAProxy + 1 replica's echo p50 minus the same"
        " replica's direct p50, in the same minutes. Every process (client, HAProxy,"
        f" replicas, backends) shares this machine's {os.cpu_count()} cores, so two replicas"
        " compete with each other and with HAProxy for them.",
    ]
    if rows.missing:
        notes.insert(0, f"**Not measured**: {rows.missing}.")
    body = [rows.seq_p50, rows.hop, *rows.throughput.values()]
    return Table("Fleet (HAProxy)", dict(FLEET_PATHS), body, notes)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def _tables(plan: Plan, paths: list[str], rows: Rows, unmeasured: str) -> list[Table]:
    """Calls and startup against direct stdio; the HTTP front against direct http;
    `unmeasured`: why the magg columns are missing, if they are."""
    columns = {path: PATHS[path] + (" †" if path == SLOW else "") for path in STDIO_TABLE}
    columns = {path: title for path, title in columns.items() if path in paths}
    rows.tp_multi.ref_value = rows.tp_one.values.get("direct")
    rows.backend_cpu.ref_value = rows.cpu.values.get("direct")
    ratios = (
        "Each cell: the figure, then (in brackets) the figure ÷ direct's figure in the same row"
        " and run; lower is better for times, CPU and memory, higher for throughput."
    )
    slow = "† FastMCP's mcpServers proxy starts every configured backend for each request"
    cache_config = '`cache = { tools = ["lookup"], ttl = 3600, scope = "public" }` on b1'
    cache_fronts = (
        f"Each mcp-agg front is started again for this row with {cache_config}"
        if plan.cache_apart
        else f"To start fewer fronts, this mode runs the mcp-agg fronts of every row with"
        f" {cache_config} (so their other rows include the cache stage)"
    )
    cache_note = (
        f'¶ The same `lookup("bench")` call {plan.seq_calls} times per round after'
        f" {_count(max(plan.warmup, 1), 'unmeasured call')}. {cache_fronts}; `lookup` is"
        " `readOnlyHint`, so the figure is a cache hit: the backend numbers its answers, and"
        " the row fails if any answer differs from the first. The direct columns make the"
        " same call without a cache (every call reaches the backend); FastMCP's proxies have"
        " no response cache."
    )
    cpu_calls = plan.rounds * plan.seq_calls
    tick = 1 / os.sysconf("SC_CLK_TCK")
    cpu_note = (
        "◊ User + system CPU time (/proc/PID/stat) over the sequential `echo` calls of the"
        " first row, ÷ those calls: of the gateway or proxy process, and of the backend"
        " processes below it; in the direct columns, of the backend itself (so the ratio of"
        " the backends' row shows what the hop adds to the backend's own work). The kernel"
        f" counts in {ms(tick)} ticks: over {_count(cpu_calls, 'call')} a figure is within"
        f" {ms(tick / cpu_calls)} per call."
    )
    # The rows both call tables show; the backends' CPU follows, in each its own way.
    shared = [
        rows.seq_p50,
        rows.seq_p99,
        rows.tp_one,
        rows.tp_multi,
        rows.blob,
        rows.cache_hit,
        rows.cpu,
    ]
    calls = Table(
        "Calls",
        columns,
        [*shared, rows.backend_cpu],
        [
            ratios,
            f"Every gateway fronts {FRONTED} backends (b1, b2) and the calls go to b1; direct"
            " is one fastmcp Client on b1's own stdio. Each round starts every path afresh, the"
            f" paths taking turns; latency rows follow {_count(plan.warmup, 'warm-up call')};"
            f" throughput calls `sleep_ms(0)` {plan.tp_calls} times per round after"
            f" {plan.tp_warmup} warm-up calls.",
            f"{slow}, so its column has one round of {_count(plan.slow_calls, 'call')} per row"
            f" after {_count(plan.slow_warmup, 'warm-up call')}, with {plan.slow_calls} in"
            f" flight instead of {IN_FLIGHT} for throughput, and no CPU rows.",
            f"‡ HTTP only (a stdio process has one session); its ratio is to direct's"
            f" 1-session throughput. blob({plan.blob_kb}) returns {plan.blob_kb} KiB of text,"
            " which FastMCP sends twice (text and structured content).",
            cache_note,
            cpu_note,
        ],
    )
    http_columns = {path: PATHS[path] for path in HTTP_PATHS if path in paths}
    http_rows = [row.seen_from("direct-http") for row in shared]
    backend_cpu = rows.backend_cpu.seen_from("direct-http", rows.cpu.values.get("direct-http"))
    http = Table(
        "HTTP front",
        http_columns,
        [*http_rows, backend_cpu],
        [
            "The same rows, measured in the same rounds, over streamable HTTP; each ratio"
            " divides by direct http's figure in the same row and run (so the mcp-agg http"
            " column is here against the backend served over HTTP, and in the table above"
            " against it over stdio).",
            "direct http is the bench backend alone, served by FastMCP's own streamable HTTP"
            " transport (`python bench/backend.py --port P`); fastmcp proxy (mounted) http is"
            f" the mounted proxy of the table above served the same way, over {FRONTED}"
            " stdio backends as mcp-agg http. The 4-session row's ratio is to direct http's"
            " own 4-session figure.",
        ],
    )
    slow_rows = f"{slow}: here it runs with at most {_count(plan.slow_startup_max, 'backend')}"
    if plan.slow_startup_max >= max(plan.startup_backends):
        slow_rows = f"{slow}; {_count(plan.slow_rss_calls, 'call')} before its RSS is read"
    startup = Table(
        "Startup and memory",
        columns,
        [rows.first_answer, *rows.startup.values(), *rows.rss.values()],
        [
            ratios,
            "Start → `initialize` answered: from spawning the front to the answer to the"
            " client's `initialize` (for the HTTP fronts, sent as soon as the port accepts"
            " a connection: mcp-agg http answers it while its backends start, and holds"
            " every other request until they have); the same runs as the 1-backend listing"
            " row. Start → complete tools/list: from spawning the front to a tools/list that"
            f" holds every backend's tools, median of {_count(plan.startup_runs, 'run')};"
            " direct is direct parallel: N fastmcp Clients starting the N backends at once"
            " and listing each.",
            f"§ Read after the listing and {_count(plan.rss_calls, 'echo call')}, on the last"
            " run with that many backends; the front process alone, not its backends. The"
            " direct column is one backend process, for scale.",
            f"{slow_rows}.",
        ],
    )
    if SLOW not in paths:
        for table in (calls, startup):
            table.notes = [note for note in table.notes if not note.startswith("†")]
    for table in (calls, http, startup):
        if unmeasured:
            table.notes.insert(0, f"**Not measured**: {unmeasured}.")
        elif any(path in MAGG_PATHS for path in table.columns):
            table.notes.append(MAGG_NOTE)
    return [table for table in (calls, http, startup) if table.columns]


async def _run(
    plan: Plan, paths: list[str], fleet: str, env: Env, log: Progress, unmeasured: str
) -> tuple[list[Table], bool]:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)  # SIGTERM unwinds like Ctrl-C
    tables: list[Table] = []
    ok = True
    if fleet != "only":
        rows = _rows(plan)
        ok &= await _call_rows(plan, paths, env, rows, log)
        starting = [path for path in paths if path in STDIO_TABLE]
        ok &= await _startup_rows(plan, starting, env, rows, log)
        tables += _tables(plan, paths, rows, unmeasured)
    if fleet != "no":
        fleet_rows, fleet_ok = await _fleet_rows(plan, env, log)
        ok &= fleet_ok
        tables.append(_fleet_table(plan, fleet_rows))
    return tables, ok


def _compile_sources() -> None:
    """Byte-compile `src/` as installing a package does, before any front starts.

    The gateway runs from an editable install, which writes no bytecode, and with
    PYTHONDONTWRITEBYTECODE set (as on the CI machine) nothing ever does: every front would
    then compile its ~120 modules at each start (about 0.1 s), where FastMCP's proxies
    load their installed, compiled modules. The start-up rows compare installations.
    """
    compileall.compile_dir(Path(__file__).resolve().parents[1] / "src", quiet=1)


def main(argv: list[str] | None = None) -> int:
    """Run every path, print the tables, optionally write them into a Markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few calls per row (for CI)")
    parser.add_argument("--markdown", type=Path, help="write the tables into this Markdown file")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}"
    )
    parser.add_argument("--magg", type=Path, default=MAGG, help=f"magg's program (default: {MAGG})")
    parser.add_argument(
        "--fleet",
        choices=["yes", "no", "only"],
        default="yes",
        help="the fleet rows (HAProxy in front of replicas): with the others, not, or alone",
    )
    args = parser.parse_args(argv)
    paths = [path for path in args.paths.split(",") if path]
    if unknown := [path for path in paths if path not in PATHS]:
        parser.error(f"unknown path(s): {', '.join(unknown)}")
    plan = QUICK if args.quick else FULL
    magg: Path | None = args.magg.resolve()
    unmeasured = ""
    if any(path in MAGG_PATHS for path in paths) and not os.access(magg, os.X_OK):
        unmeasured = f"magg is not installed ({magg} not found: `make bench-magg`)"
        paths = [path for path in paths if path not in MAGG_PATHS]
        magg = None
    command = shlex.join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])])

    log = Progress()
    if unmeasured:
        log(unmeasured)
    _compile_sources()
    started = datetime.datetime.now(datetime.UTC)
    source, source_key = source_state()
    reaper = Reaper()
    workdir = Path(tempfile.mkdtemp(prefix="mcp-agg-bench-"))
    ok, left = False, 0
    try:
        with (workdir / "children.log").open("a") as child_log:
            env = Env(workdir, child_log, reaper, graceful=plan.graceful, say=log, magg=magg)
            tables, ok = asyncio.run(_run(plan, paths, args.fleet, env, log, unmeasured))
    except (KeyboardInterrupt, asyncio.CancelledError):
        log("interrupted")
        return 130
    finally:
        left = reaper.sweep()
        if left:
            log(f"killed {left} process(es) still running at the end")
        if ok and not left:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"the processes' stderr is kept in {workdir / 'children.log'}")
    took = time.monotonic() - log.started
    end_source, end_key = source_state()
    if end_key != source_key:  # every front imports mcp_agg afresh from src/ when it starts
        source += f"; src/ changed during the run, now {end_source}"
    info = machine_info(plan.mode, command, took, started, source, magg)
    block = "\n\n".join([info, *(table.markdown() for table in tables)])
    print(block)
    if args.markdown:
        write_markdown(args.markdown, block)
        log(f"wrote {args.markdown}")
    return 0 if ok and not left else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
