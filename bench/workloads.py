"""The measured workloads: each takes open sessions and returns raw samples or a rate.

Every call goes through `call_tool_mcp` (one request per call: FastMCP's `call_tool` adds
a `tools/list` per tool name) and is checked, so a path that answers errors fast cannot
look fast.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Sequence

from harness import BenchError, Session

__all__ = [
    "blob_latency",
    "median",
    "percentile",
    "repeated_lookup",
    "sequential_echo",
    "throughput",
]

ECHO_TEXT = "hello, gateway"
LOOKUP_KEY = "bench"


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least q% of samples at or below it."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


async def sequential_echo(session: Session, calls: int, warmup: int) -> list[float]:
    """Seconds per `echo` call, one call at a time, after `warmup` unmeasured calls."""
    for _ in range(warmup):
        await session.call("echo", text=ECHO_TEXT)
    samples: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        await session.call("echo", text=ECHO_TEXT)
        samples.append(time.perf_counter() - started)
    return samples


async def throughput(sessions: Sequence[Session], calls: int, in_flight: int, warmup: int) -> float:
    """Calls per second of `sleep_ms(0)` with `in_flight` calls outstanding at all times.

    The workers are spread round-robin over `sessions`; each starts its next call as soon
    as its last one returns.
    """
    remaining = warmup

    async def worker(session: Session) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await session.call("sleep_ms", ms=0)

    workers = [sessions[index % len(sessions)] for index in range(in_flight)]
    await asyncio.gather(*(worker(session) for session in workers))
    remaining = calls
    started = time.perf_counter()
    await asyncio.gather(*(worker(session) for session in workers))
    return calls / (time.perf_counter() - started)


async def blob_latency(session: Session, kb: int, calls: int, warmup: int) -> list[float]:
    """Seconds per `blob(kb)` call, one at a time, after `warmup` unmeasured calls."""
    samples: list[float] = []
    for index in range(warmup + calls):
        started = time.perf_counter()
        result = await session.call("blob", kb=kb)
        elapsed = time.perf_counter() - started
        text = getattr(result.content[0], "text", "") if result.content else ""
        if len(text) != kb * 1024:
            raise BenchError(f"blob({kb}) returned {len(text)} characters")
        if index >= warmup:
            samples.append(elapsed)
    return samples


async def repeated_lookup(
    session: Session, calls: int, warmup: int, *, cached: bool
) -> list[float]:
    """Seconds per `lookup(LOOKUP_KEY)`, the same call each time, after `warmup` unmeasured
    calls (at least one: the call that fills a cache).

    The backend numbers its answers, so with `cached` every answer must be the first
    one's: one that differs reached the backend, and the row fails instead of timing it.
    """
    first = ""
    samples: list[float] = []
    for index in range(max(warmup, 1) + calls):
        started = time.perf_counter()
        result = await session.call("lookup", key=LOOKUP_KEY)
        elapsed = time.perf_counter() - started
        text = getattr(result.content[0], "text", "") if result.content else ""
        if index == 0:
            first = text
        elif cached and text != first:
            raise BenchError(f"call {index + 1} was not a cache hit: {text!r} after {first!r}")
        if index >= max(warmup, 1):
            samples.append(elapsed)
    return samples
