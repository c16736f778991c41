"""tenacity's loop, for what happens after a failure: a call's retries (`retry.retrying`)
and a replica's reconnects (`backend/upstream.py`).

Its own module so that tenacity is imported at the first failure, not at every start:
most gateways never retry or reconnect, and tenacity's modules are about 0.35 MiB of a
front process that should weigh no more than FastMCP's own proxy (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    DoAttempt,
    DoSleep,
    RetryCallState,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from mcp_agg.config import RetryConfig
from mcp_agg.errors import classify
from mcp_agg.resilience.retry import Attempt, RetryBudget, is_retryable

__all__ = ["Retryable", "backoff", "resume", "stop_for"]

_T = TypeVar("_T")


def backoff(config: RetryConfig) -> wait_base:
    """Exponential backoff with full jitter: a random wait in [0, base * 2^n], capped."""
    return wait_random_exponential(multiplier=config.base_delay, max=config.max_delay)


def stop_for(config: RetryConfig, remaining: float) -> stop_base:
    """Stop after `attempts`, or before a wait that would pass the call's deadline."""
    return stop_after_attempt(config.attempts) | stop_before_delay(max(remaining, 0.0))


class Retryable(retry_base):
    """tenacity's retry condition: a failure the safety rule allows, while the budget lasts."""

    def __init__(
        self, budget: RetryBudget, *, safe: bool, final: tuple[type[BaseException], ...]
    ) -> None:
        self.budget = budget
        self.safe = safe
        self.final = final

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        if exc is None or isinstance(exc, self.final):
            return False
        return is_retryable(classify(exc), safe=self.safe) and self.budget.try_spend()


async def resume(loop: AsyncRetrying, first: Exception, attempt: Attempt[_T]) -> _T:
    """Go on with tenacity's own loop (what `AsyncRetrying.__call__` runs) as if it had
    made the first attempt itself and seen it fail with `first`: its wait, stop and
    retry decide every attempt after it, numbered from 2."""
    loop.begin()
    state = RetryCallState(loop, fn=None, args=(), kwargs={})
    state.set_exception((type(first), first, first.__traceback__))
    while True:
        do = await loop.iter(retry_state=state)
        if isinstance(do, DoSleep):
            state.prepare_for_next_attempt()
            await loop.sleep(do)  # type: ignore[misc]
        elif isinstance(do, DoAttempt):
            try:
                result = await attempt(state.attempt_number)
            except Exception as exc:  # a cancellation is not an attempt's failure
                state.set_exception((type(exc), exc, exc.__traceback__))
            else:
                state.set_result(result)
        else:
            return do  # type: ignore[no-any-return]
