"""A circuit breaker per replica: stop sending to a replica that keeps failing.

CLOSED lets calls through and counts failures; it opens after `failure_threshold`
consecutive failures, or when the failure rate over the last `window` seconds reaches
`failure_rate` with at least `min_calls` calls. OPEN rejects calls for `reset_timeout`
seconds, then HALF_OPEN admits `half_open_calls` probes: their success closes the
breaker, a failure opens it again.

Only failures that the classification in errors.py counts against a backend are
recorded: a tool result with `isError: true` is a success here, and local rejections
(rate limits, the breaker itself) are never recorded at all.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import time
from collections.abc import Callable, Iterator

import anyio

from mcp_agg.errors import UpstreamUnavailable, counts_against_replica

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        half_open_calls: int = 1,
        failure_rate: float = 0.5,
        window: float = 30.0,
        min_calls: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.half_open_calls = half_open_calls
        self.failure_rate = failure_rate
        self.window = window
        self.min_calls = min_calls
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes = 0  # half-open probes admitted and not yet answered
        self._outcomes: collections.deque[tuple[float, bool]] = collections.deque()
        self.opened = 0  # how many times it opened, for status

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout
        ):
            self._state = BreakerState.HALF_OPEN
            self._probes = 0
        return self._state

    def allows(self) -> bool:
        """Whether a call may go to this replica now (does not take a probe slot)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            return self._probes < self.half_open_calls
        return False

    def acquire(self) -> bool:
        """Admit one call: in HALF_OPEN this takes one of the probe slots."""
        if not self.allows():
            return False
        if self._state is BreakerState.HALF_OPEN:
            self._probes += 1
        return True

    def release(self) -> None:
        """A call admitted by `acquire` ended with no verdict (cancelled, not sent)."""
        if self._state is BreakerState.HALF_OPEN and self._probes:
            self._probes -= 1

    @contextlib.contextmanager
    def guard(self, replica: str) -> Iterator[None]:
        """One call to `replica` under the breaker: refused while it is open, and its
        outcome recorded. A failure that does not count against the replica, or the
        call's cancellation (its deadline, not the replica's verdict), is no verdict."""
        if not self.acquire():
            raise UpstreamUnavailable(f"backend {replica}: circuit open", replica=replica)
        try:
            yield
        except anyio.get_cancelled_exc_class():
            self.release()
            raise
        except Exception as exc:
            if counts_against_replica(exc):
                self.record_failure()
            else:
                self.release()
            raise
        self.record_success()  # an isError result is a working backend

    def record_success(self) -> None:
        self._remember(ok=True)
        self._consecutive = 0
        if self._state is BreakerState.HALF_OPEN:
            self._close()

    def record_failure(self) -> None:
        self._remember(ok=False)
        self._consecutive += 1
        half_open_probe_failed = self._state is BreakerState.HALF_OPEN
        if half_open_probe_failed or (self._state is BreakerState.CLOSED and self._should_open()):
            self._open()

    def _should_open(self) -> bool:
        if self._consecutive >= self.failure_threshold:
            return True
        if len(self._outcomes) < self.min_calls:
            return False
        failures = sum(1 for _, ok in self._outcomes if not ok)
        return failures / len(self._outcomes) >= self.failure_rate

    def _remember(self, *, ok: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, ok))
        horizon = now - self.window
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probes = 0
        self.opened += 1

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._probes = 0
        self._outcomes.clear()
