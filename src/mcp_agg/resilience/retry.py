"""When a failed call is tried again: tenacity's primitives, a budget, the safety rule,
and the loop that applies them (`retrying`).

tenacity supplies the backoff (exponential with full jitter) and the stops (attempts,
and never past the call's deadline). Two things a generic retry gets wrong for a
gateway are decided here instead:
- what may be retried: a failure before the request was sent always; a failure after
  it was sent only for a tool that is safe to repeat (FastMCP's RetryMiddleware would
  re-run a non-idempotent tool, e.g. send an email twice);
- how much: retries are limited to a share of recent calls (a retry budget), so a
  backend in trouble is not hit by a multiple of its normal load.

What an attempt is (which replica, under which breaker) is the caller's business: the
loop only numbers the attempts and decides whether another one is made.
"""

from __future__ import annotations

import collections
import fnmatch
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio
import mcp_types
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
from mcp_agg.errors import FailureKind, classify

__all__ = ["RetryBudget", "backoff", "is_retryable", "retry_safe", "retrying", "stop_for"]

_T = TypeVar("_T")

#: One attempt of a call, given its number (the first is 1).
Attempt = Callable[[int], Awaitable[_T]]

#: The `_meta` key that carries one logical call's idempotency key on every attempt.
IDEMPOTENCY_KEY = "mcp-agg/idempotency-key"


def backoff(config: RetryConfig) -> wait_base:
    """Exponential backoff with full jitter: a random wait in [0, base * 2^n], capped."""
    return wait_random_exponential(multiplier=config.base_delay, max=config.max_delay)


def stop_for(config: RetryConfig, remaining: float) -> stop_base:
    """Stop after `attempts`, or before a wait that would pass the call's deadline."""
    return stop_after_attempt(config.attempts) | stop_before_delay(max(remaining, 0.0))


def is_retryable(kind: FailureKind, *, safe: bool) -> bool:
    if kind in (FailureKind.NOT_SENT, FailureKind.SESSION_EXPIRED):
        return True  # nothing ran, or the session is re-established first
    if kind is FailureKind.BROKEN:
        return safe
    return False  # the backend answered: the request itself is wrong


def retry_safe(
    tool: str,
    annotations: mcp_types.ToolAnnotations | None,
    *,
    idempotent: Sequence[str],
    non_idempotent: Sequence[str],
) -> bool:
    """Whether repeating a call to `tool` after it was sent is harmless.

    Annotations come from the backend and are untrusted: the operator's patterns
    override them both ways, and `non_idempotent` wins over `idempotent`.
    """
    if any(fnmatch.fnmatchcase(tool, p) for p in non_idempotent):
        return False
    if any(fnmatch.fnmatchcase(tool, p) for p in idempotent):
        return True
    if annotations is None:
        return False
    return bool(annotations.read_only_hint or annotations.idempotent_hint)


class RetryBudget:
    """Retries allowed: `percent` of the calls in the last `window` seconds, plus a floor.

    The floor (`min_per_second`) lets a quiet gateway still retry; the share stops a
    busy one from multiplying its load on a backend that is already failing.
    """

    def __init__(
        self,
        percent: float,
        *,
        min_per_second: float = 1.0,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.percent = percent
        self.min_per_second = min_per_second
        self.window = window
        self._clock = clock
        self._calls: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()
        self.refused = 0

    def record_call(self) -> None:
        self._calls.append(self._clock())

    def try_spend(self) -> bool:
        now = self._clock()
        horizon = now - self.window
        for stamps in (self._calls, self._retries):
            while stamps and stamps[0] < horizon:
                stamps.popleft()
        allowed = len(self._calls) * self.percent / 100 + self.min_per_second * self.window
        if len(self._retries) >= allowed:
            self.refused += 1
            return False
        self._retries.append(now)
        return True


async def retrying(
    attempt: Attempt[_T],
    config: RetryConfig,
    budget: RetryBudget,
    *,
    deadline: float,
    safe: bool,
    final: tuple[type[BaseException], ...] = (),
) -> _T:
    """`attempt` until it succeeds or a failure is not to be retried; that one is raised.

    A failure is retried while `is_retryable` allows it for `safe`, within
    `config.attempts`, never with a wait past `deadline` (on anyio's clock), and while
    `budget` has retries to spend; a failure of a `final` type ends the loop at once.
    The call counts once in the budget.
    """
    budget.record_call()
    try:
        # Most calls succeed at once: tenacity's loop (tens of microseconds a call,
        # measured) is set up only for a call whose first attempt failed.
        return await attempt(1)
    except final:
        raise
    except Exception as first:
        loop = AsyncRetrying(
            wait=backoff(config),
            stop=stop_for(config, deadline - anyio.current_time()),
            retry=_Retryable(budget, safe=safe, final=final),
            reraise=True,
        )
        return await _retry_after(loop, first, attempt)


class _Retryable(retry_base):
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


async def _retry_after(loop: AsyncRetrying, first: Exception, attempt: Attempt[_T]) -> _T:
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
