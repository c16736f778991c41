"""Tests for mcp_agg.resilience.retry: what may be retried, the budget, backoff, stops and
the loop that applies them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp_types
import pytest
import tenacity
from tenacity.wait import wait_random_exponential

from mcp_agg.config import RetryConfig
from mcp_agg.errors import (
    FailureKind,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRequestError,
)
from mcp_agg.resilience.retry import (
    IDEMPOTENCY_KEY,
    RetryBudget,
    is_retryable,
    retry_safe,
    retrying,
)
from mcp_agg.resilience.retryloop import backoff, stop_for
from tests.fakes import FakeClock


def call_state(
    attempt: int, *, elapsed: float = 0.0, upcoming_sleep: float = 0.0
) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.outcome_timestamp = state.start_time + elapsed
    state.upcoming_sleep = upcoming_sleep
    return state


# ---------------------------------------------------------------------------- is_retryable


@pytest.mark.parametrize(
    ("kind", "safe", "expected"),
    [
        (FailureKind.NOT_SENT, True, True),
        (FailureKind.NOT_SENT, False, True),
        (FailureKind.SESSION_EXPIRED, True, True),
        (FailureKind.SESSION_EXPIRED, False, True),
        (FailureKind.BROKEN, True, True),
        (FailureKind.BROKEN, False, False),
        (FailureKind.PROTOCOL, True, False),
        (FailureKind.PROTOCOL, False, False),
    ],
)
def test_is_retryable(kind: FailureKind, safe: bool, expected: bool) -> None:
    assert is_retryable(kind, safe=safe) is expected


def test_is_retryable_covers_every_kind() -> None:
    for kind in FailureKind:
        assert isinstance(is_retryable(kind, safe=True), bool)
        assert isinstance(is_retryable(kind, safe=False), bool)


# ---------------------------------------------------------------------------- retry_safe


READ_ONLY = mcp_types.ToolAnnotations(readOnlyHint=True)
IDEMPOTENT = mcp_types.ToolAnnotations(idempotentHint=True)
NEITHER = mcp_types.ToolAnnotations(readOnlyHint=False, idempotentHint=False)
EMPTY = mcp_types.ToolAnnotations()


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        (READ_ONLY, True),
        (IDEMPOTENT, True),
        (mcp_types.ToolAnnotations(readOnlyHint=True, idempotentHint=True), True),
        (NEITHER, False),
        (EMPTY, False),
        (mcp_types.ToolAnnotations(destructiveHint=False), False),
        (None, False),
    ],
    ids=["read-only", "idempotent", "both", "neither", "empty", "not-destructive", "none"],
)
def test_retry_safe_from_annotations(
    annotations: mcp_types.ToolAnnotations | None, expected: bool
) -> None:
    assert retry_safe("tool", annotations, idempotent=(), non_idempotent=()) is expected


def test_idempotent_pattern_makes_unannotated_tool_safe() -> None:
    assert retry_safe("get_weather", None, idempotent=["get_*"], non_idempotent=[]) is True
    assert retry_safe("get_weather", NEITHER, idempotent=["get_*"], non_idempotent=[]) is True
    assert retry_safe("set_weather", None, idempotent=["get_*"], non_idempotent=[]) is False


def test_idempotent_exact_name() -> None:
    assert retry_safe("lookup", None, idempotent=["lookup"], non_idempotent=[]) is True
    assert retry_safe("lookup2", None, idempotent=["lookup"], non_idempotent=[]) is False


def test_non_idempotent_pattern_overrides_read_only_hint() -> None:
    assert retry_safe("send_email", READ_ONLY, idempotent=[], non_idempotent=["send_*"]) is False
    assert retry_safe("send_email", IDEMPOTENT, idempotent=[], non_idempotent=["send_*"]) is False
    assert retry_safe("read_email", READ_ONLY, idempotent=[], non_idempotent=["send_*"]) is True


def test_non_idempotent_wins_when_both_match() -> None:
    assert retry_safe("send_email", None, idempotent=["*"], non_idempotent=["send_*"]) is False
    assert (
        retry_safe("send_email", READ_ONLY, idempotent=["send_email"], non_idempotent=["*_email"])
        is False
    )
    assert retry_safe("get_email", None, idempotent=["*"], non_idempotent=["send_*"]) is True


def test_patterns_are_case_sensitive() -> None:
    assert retry_safe("Get_x", None, idempotent=["get_*"], non_idempotent=[]) is False
    assert retry_safe("SEND_x", READ_ONLY, idempotent=[], non_idempotent=["send_*"]) is True


def test_idempotency_key_is_namespaced() -> None:
    assert IDEMPOTENCY_KEY.startswith("mcp-agg/")


# ---------------------------------------------------------------------------- RetryBudget


def test_budget_percent_of_calls() -> None:
    budget = RetryBudget(20, min_per_second=0, window=10, clock=FakeClock())
    for _ in range(100):
        budget.record_call()
    for _ in range(20):
        assert budget.try_spend()
    assert budget.refused == 0
    assert not budget.try_spend()
    assert budget.refused == 1
    assert not budget.try_spend()
    assert budget.refused == 2


def test_budget_floor_without_calls() -> None:
    budget = RetryBudget(20, min_per_second=1, window=10, clock=FakeClock())
    for _ in range(10):
        assert budget.try_spend()
    assert not budget.try_spend()
    assert budget.refused == 1


def test_budget_floor_and_share_add_up() -> None:
    budget = RetryBudget(10, min_per_second=1, window=10, clock=FakeClock())
    for _ in range(50):
        budget.record_call()
    spent = sum(budget.try_spend() for _ in range(30))
    assert spent == 15  # 10 % of 50, plus 1/s over 10 s
    assert budget.refused == 15


def test_budget_zero_allows_nothing() -> None:
    budget = RetryBudget(0, min_per_second=0, window=10, clock=FakeClock())
    for _ in range(100):
        budget.record_call()
    assert not budget.try_spend()
    assert budget.refused == 1


def test_budget_spends_leave_the_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(20, min_per_second=1, window=10, clock=clock)
    for _ in range(10):
        assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(10.5)
    for _ in range(10):
        assert budget.try_spend()
    assert not budget.try_spend()
    assert budget.refused == 2


def test_budget_calls_leave_the_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(20, min_per_second=0, window=10, clock=clock)
    for _ in range(100):
        budget.record_call()
    for _ in range(20):
        assert budget.try_spend()
    clock.advance(11)
    # The 100 calls and the 20 retries are all older than the window now.
    assert not budget.try_spend()
    for _ in range(50):
        budget.record_call()
    for _ in range(10):
        assert budget.try_spend()
    assert not budget.try_spend()
    assert budget.refused == 2


def test_budget_partial_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(20, min_per_second=0, window=10, clock=clock)
    for _ in range(50):
        budget.record_call()
    clock.advance(6)
    for _ in range(50):
        budget.record_call()
    for _ in range(20):
        assert budget.try_spend()
    assert not budget.try_spend()
    clock.advance(5)  # the first 50 calls are 11 s old now, the others 5 s
    assert not budget.try_spend()  # 20 % of 50 = 10 allowed, 20 spent in the window


def test_budget_defaults() -> None:
    budget = RetryBudget(20)
    assert budget.min_per_second == 1.0
    assert budget.window == 10.0
    assert budget.refused == 0


# ---------------------------------------------------------------------------- backoff


def test_backoff_type_and_parameters() -> None:
    wait = backoff(RetryConfig(base_delay=0.2, max_delay=3.0))
    assert isinstance(wait, wait_random_exponential)
    assert wait.multiplier == 0.2
    assert wait.max == 3.0


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 12, 20])
def test_backoff_waits_within_bounds(attempt: int) -> None:
    config = RetryConfig(base_delay=0.1, max_delay=2.0)
    wait = backoff(config)
    cap = min(config.base_delay * 2 ** (attempt - 1), config.max_delay)
    for _ in range(200):
        delay = wait(call_state(attempt))
        assert 0.0 <= delay <= config.max_delay
        assert delay <= cap + 1e-12


def test_backoff_window_grows() -> None:
    config = RetryConfig(base_delay=0.1, max_delay=100.0)
    wait = backoff(config)
    early = max(wait(call_state(1)) for _ in range(300))
    late = max(wait(call_state(6)) for _ in range(300))
    assert early <= 0.1
    assert late > 0.1  # the window at attempt 6 is [0, 3.2]: surely something above 0.1


def test_backoff_zero_delay() -> None:
    wait = backoff(RetryConfig(base_delay=0, max_delay=0))
    for attempt in (1, 5, 10):
        assert wait(call_state(attempt)) == 0.0


# ---------------------------------------------------------------------------- stop_for


def test_stop_after_attempts() -> None:
    stop = stop_for(RetryConfig(attempts=3), remaining=1000.0)
    assert not stop(call_state(1))
    assert not stop(call_state(2))
    assert stop(call_state(3))
    assert stop(call_state(4))


def test_stop_single_attempt() -> None:
    stop = stop_for(RetryConfig(attempts=1), remaining=1000.0)
    assert stop(call_state(1))


def test_stop_before_wait_past_deadline() -> None:
    stop = stop_for(RetryConfig(attempts=10), remaining=2.0)
    assert not stop(call_state(1, elapsed=0.5, upcoming_sleep=1.0))
    assert stop(call_state(1, elapsed=1.5, upcoming_sleep=1.0))
    assert stop(call_state(1, elapsed=2.5, upcoming_sleep=0.0))


def test_stop_when_deadline_already_passed() -> None:
    stop = stop_for(RetryConfig(attempts=10), remaining=-1.0)
    assert stop(call_state(1))


# ---------------------------------------------------------------------------- retrying

#: No waiting between attempts.
FAST = RetryConfig(attempts=3, base_delay=0, max_delay=0)


class Final(UpstreamError):
    """An attempt's way to say no attempt can follow (a group with no replica left)."""


class Attempts:
    """An attempt callable that plays `plan(number)`: an exception to raise, or a result."""

    def __init__(self, plan: Callable[[int], Any]) -> None:
        self.plan = plan
        self.numbers: list[int] = []

    async def __call__(self, number: int) -> Any:
        self.numbers.append(number)
        outcome = self.plan(number)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def generous() -> RetryBudget:
    return RetryBudget(0, min_per_second=100)


async def run(
    attempts: Attempts,
    *,
    config: RetryConfig = FAST,
    budget: RetryBudget | None = None,
    safe: bool = False,
    remaining: float = 60.0,
) -> Any:
    return await retrying(
        attempts,
        config,
        budget or generous(),
        deadline=anyio.current_time() + remaining,
        safe=safe,
        final=(Final,),
    )


async def test_a_first_attempt_that_succeeds_sets_up_no_retry_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_loop(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("tenacity's loop is set up only after a failure")

    monkeypatch.setattr(tenacity, "AsyncRetrying", no_loop)
    attempts = Attempts(lambda n: "ok")
    assert await run(attempts) == "ok"
    assert attempts.numbers == [1]


async def test_each_call_counts_once_in_the_budget() -> None:
    clock = FakeClock()
    budget = RetryBudget(10, min_per_second=0, clock=clock)
    for _ in range(10):
        await run(Attempts(lambda n: "ok"), budget=budget)
    # 10 calls at 10 %: one retry allowed, and only one.
    assert budget.try_spend()
    assert not budget.try_spend()


async def test_a_retryable_failure_is_tried_again_numbered_from_two() -> None:
    attempts = Attempts(lambda n: UpstreamConnectError("refused") if n < 3 else {"n": n})
    assert await run(attempts) == {"n": 3}
    assert attempts.numbers == [1, 2, 3]


async def test_a_result_of_none_after_a_retry_is_the_result() -> None:
    attempts = Attempts(lambda n: UpstreamConnectError("refused") if n == 1 else None)
    assert await run(attempts) is None
    assert attempts.numbers == [1, 2]


async def test_a_failure_after_sending_is_retried_only_when_safe() -> None:
    broken = UpstreamRequestError("connection lost after sending")
    unsafe = Attempts(lambda n: broken if n == 1 else "ok")
    with pytest.raises(UpstreamRequestError) as raised:
        await run(unsafe, safe=False)
    assert raised.value is broken
    assert unsafe.numbers == [1]
    safe = Attempts(lambda n: broken if n == 1 else "ok")
    assert await run(safe, safe=True) == "ok"
    assert safe.numbers == [1, 2]


async def test_attempts_cap_the_loop_and_the_last_failure_is_raised() -> None:
    attempts = Attempts(lambda n: UpstreamConnectError(f"refused {n}"))
    with pytest.raises(UpstreamConnectError, match="refused 3"):
        await run(attempts)
    assert attempts.numbers == [1, 2, 3]


async def test_a_final_failure_ends_the_loop_at_once() -> None:
    budget = generous()
    attempts = Attempts(lambda n: UpstreamConnectError("refused") if n == 1 else Final("none"))
    with pytest.raises(Final):
        await run(attempts, budget=budget)
    assert attempts.numbers == [1, 2]
    assert budget.refused == 0


async def test_a_final_first_failure_sets_up_no_retry_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_loop(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a final failure is raised as it is")

    monkeypatch.setattr(tenacity, "AsyncRetrying", no_loop)
    attempts = Attempts(lambda n: Final("no replica"))
    with pytest.raises(Final, match="no replica"):
        await run(attempts)
    assert attempts.numbers == [1]


async def test_no_retry_once_the_budget_is_spent() -> None:
    stingy = RetryBudget(0, min_per_second=0)
    attempts = Attempts(lambda n: UpstreamConnectError("refused"))
    with pytest.raises(UpstreamConnectError):
        await run(attempts, budget=stingy)
    assert attempts.numbers == [1]
    assert stingy.refused == 1


async def test_no_retry_whose_wait_would_pass_the_deadline() -> None:
    slow = RetryConfig(attempts=5, base_delay=10, max_delay=10)
    attempts = Attempts(lambda n: UpstreamConnectError("refused"))
    with pytest.raises(UpstreamConnectError):
        await run(attempts, config=slow, remaining=-1.0)
    assert attempts.numbers == [1]
