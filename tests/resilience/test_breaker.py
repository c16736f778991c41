"""Tests for mcp_agg.resilience.breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED/OPEN."""

from __future__ import annotations

import anyio
import mcp_types
import pytest
from mcp.shared.exceptions import MCPError

from mcp_agg.errors import UpstreamRequestError, UpstreamUnavailable
from mcp_agg.resilience.breaker import BreakerState, CircuitBreaker
from tests.fakes import FakeClock


def make(
    clock: FakeClock,
    *,
    failure_threshold: int = 3,
    reset_timeout: float = 10.0,
    half_open_calls: int = 1,
    failure_rate: float = 0.5,
    window: float = 30.0,
    min_calls: int = 10,
) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=failure_threshold,
        reset_timeout=reset_timeout,
        half_open_calls=half_open_calls,
        failure_rate=failure_rate,
        window=window,
        min_calls=min_calls,
        clock=clock,
    )


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


# ---------------------------------------------------------------------------- closed


def test_starts_closed_and_admits() -> None:
    breaker = make(FakeClock())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows()
    assert breaker.acquire()
    assert breaker.opened == 0


def test_opens_after_failure_threshold_consecutive_failures_not_before() -> None:
    breaker = make(FakeClock(), failure_threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened == 1


def test_success_resets_consecutive_count() -> None:
    # min_calls is out of reach so only the consecutive rule can open it.
    breaker = make(FakeClock(), failure_threshold=3, min_calls=1000)
    for _ in range(10):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_opens_on_failure_rate_once_min_calls_reached() -> None:
    breaker = make(FakeClock(), failure_threshold=100, failure_rate=0.5, min_calls=10)
    for _ in range(4):
        breaker.record_success()
        breaker.record_failure()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED  # 9 calls: below min_calls
    breaker.record_failure()  # 10 calls, 5 failed: rate 0.5
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened == 1


def test_failure_rate_ignored_below_min_calls() -> None:
    breaker = make(FakeClock(), failure_threshold=100, failure_rate=0.5, min_calls=10)
    # 9 calls, 5 of them failed (a rate over 0.5), but fewer than min_calls.
    for _ in range(4):
        breaker.record_failure()
        breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows()


def test_rate_below_threshold_stays_closed() -> None:
    breaker = make(FakeClock(), failure_threshold=100, failure_rate=0.5, min_calls=10)
    for _ in range(10):
        breaker.record_success()
        breaker.record_success()
        breaker.record_failure()  # one in three
    assert breaker.state is BreakerState.CLOSED


def test_old_outcomes_fall_out_of_the_window() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=100, failure_rate=0.5, min_calls=10, window=30.0)
    for _ in range(4):
        breaker.record_success()
        breaker.record_failure()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    clock.advance(31.0)  # the 9 outcomes above are now older than the window
    breaker.record_failure()  # would be 10 calls at rate 0.5 if they still counted
    assert breaker.state is BreakerState.CLOSED
    for _ in range(8):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 9 recent calls: still below min_calls
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_outcomes_inside_the_window_still_count() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=100, failure_rate=0.5, min_calls=10, window=30.0)
    for _ in range(4):
        breaker.record_success()
        breaker.record_failure()
    breaker.record_success()
    clock.advance(29.0)
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


# ---------------------------------------------------------------------------- open


def test_open_rejects_calls() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0)
    trip(breaker)
    assert not breaker.allows()
    assert not breaker.acquire()
    clock.advance(9.9)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows()
    assert not breaker.acquire()


def test_release_in_open_state_does_not_admit() -> None:
    breaker = make(FakeClock())
    trip(breaker)
    breaker.release()
    assert not breaker.allows()


def test_becomes_half_open_after_reset_timeout() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows()


# ---------------------------------------------------------------------------- half open


def test_half_open_admits_exactly_half_open_calls_probes() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0, half_open_calls=2)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.acquire()
    assert breaker.allows()
    assert breaker.acquire()
    assert not breaker.allows()
    assert not breaker.acquire()
    assert breaker.state is BreakerState.HALF_OPEN


def test_half_open_single_probe() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0, half_open_calls=1)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.acquire()
    assert not breaker.acquire()


def test_allows_does_not_take_a_probe_slot() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0, half_open_calls=1)
    trip(breaker)
    clock.advance(10.0)
    for _ in range(5):
        assert breaker.allows()
    assert breaker.acquire()
    assert not breaker.allows()


def test_probe_success_closes() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allows()
    assert breaker.acquire()
    assert breaker.opened == 1


def test_closing_resets_counts() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0, failure_threshold=3)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.acquire()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_probe_failure_reopens() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0)
    trip(breaker)
    assert breaker.opened == 1
    clock.advance(10.0)
    assert breaker.acquire()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened == 2
    assert not breaker.allows()
    assert not breaker.acquire()
    # The reset timeout starts again from the reopening.
    clock.advance(9.0)
    assert breaker.state is BreakerState.OPEN
    clock.advance(1.0)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.opened == 2


def test_release_gives_probe_slot_back() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0, half_open_calls=1)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.acquire()
    assert not breaker.acquire()
    breaker.release()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows()
    assert breaker.acquire()
    assert not breaker.acquire()


def test_release_without_probe_is_harmless() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=10.0, half_open_calls=1)
    breaker.release()  # closed: nothing to give back
    assert breaker.state is BreakerState.CLOSED
    trip(breaker)
    clock.advance(10.0)
    breaker.release()  # half open, no probe taken: must not make room for two
    breaker.release()
    assert breaker.acquire()
    assert not breaker.acquire()


def test_reopening_each_cycle_counts() -> None:
    clock = FakeClock()
    breaker = make(clock, reset_timeout=5.0)
    trip(breaker)
    for expected in range(2, 6):
        clock.advance(5.0)
        assert breaker.acquire()
        breaker.record_failure()
        assert breaker.opened == expected
        assert breaker.state is BreakerState.OPEN


def test_state_values() -> None:
    assert BreakerState.CLOSED.value == "closed"
    assert BreakerState.OPEN.value == "open"
    assert BreakerState.HALF_OPEN.value == "half_open"


# ---------------------------------------------------------------------------- guard
# (in an event loop, as every call is: a cancellation is the running loop's own)


def half_open(clock: FakeClock) -> CircuitBreaker:
    breaker = make(clock)
    trip(breaker)
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN
    return breaker


async def test_guard_refuses_while_open() -> None:
    breaker = make(FakeClock())
    trip(breaker)
    with (
        pytest.raises(UpstreamUnavailable, match="backend r1: circuit open") as raised,
        breaker.guard("r1"),
    ):
        raise AssertionError("a refused call never runs")
    assert raised.value.replica == "r1"


async def test_guard_records_a_success() -> None:
    breaker = half_open(FakeClock())
    with breaker.guard("r1"):
        pass
    assert breaker.state is BreakerState.CLOSED


async def test_guard_records_a_failure_that_counts_against_the_replica() -> None:
    breaker = half_open(FakeClock())
    with pytest.raises(UpstreamRequestError), breaker.guard("r1"):
        raise UpstreamRequestError("connection lost after sending")
    assert breaker.state is BreakerState.OPEN


async def test_guard_gives_the_probe_back_for_the_backends_own_answer() -> None:
    breaker = half_open(FakeClock())
    with pytest.raises(MCPError), breaker.guard("r1"):
        raise MCPError(mcp_types.INVALID_PARAMS, "bad arguments")
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows()  # the probe slot is free again


async def test_guard_gives_the_probe_back_when_the_call_is_cancelled() -> None:
    breaker = half_open(FakeClock())
    with anyio.CancelScope() as scope:
        with breaker.guard("r1"):
            scope.cancel()
            await anyio.sleep(1)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allows()
