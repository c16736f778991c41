"""When a failed call is tried again: a budget, the safety rule, and the loop that
applies them (`retrying`) with tenacity's primitives (`retryloop.py`).

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

from mcp_agg.config import RetryConfig
from mcp_agg.errors import FailureKind

__all__ = ["Attempt", "RetryBudget", "is_retryable", "retry_safe", "retrying"]

_T = TypeVar("_T")

#: One attempt of a call, given its number (the first is 1).
Attempt = Callable[[int], Awaitable[_T]]

#: The `_meta` key that carries one logical call's idempotency key on every attempt.
IDEMPOTENCY_KEY = "mcp-agg/idempotency-key"


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
        # tenacity: imported at the first failure (`retryloop.py`).
        from tenacity import AsyncRetrying

        from mcp_agg.resilience.retryloop import Retryable, backoff, resume, stop_for

        loop = AsyncRetrying(
            wait=backoff(config),
            stop=stop_for(config, deadline - anyio.current_time()),
            retry=Retryable(budget, safe=safe, final=final),
            reraise=True,
        )
        return await resume(loop, first, attempt)
