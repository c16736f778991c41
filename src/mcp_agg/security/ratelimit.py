"""Rate limits per client identity: token buckets, with per-tool overrides.

`[gateway.rate_limit]` gives every client identity a bucket of `burst` tokens refilled
at `requests_per_second`; a call takes one token, and a call that finds less than one
is refused with the time until one is there. `[gateway.rate_limit.tools]` maps glob
patterns over exposed tool names to buckets of their own: a call to a matching tool
(the first pattern that matches, in order) takes its token from the bucket of that
identity and pattern instead of the identity's default bucket.

State stays bounded: a bucket that has been idle long enough to be full again is the
same as a new one, so it is dropped, and beyond `max_buckets` the least recently used
ones go first (that only ever gives a flood of identities a fresh burst).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from mcp_agg.config import RateConfig, RateLimitConfig
from mcp_agg.errors import RateLimited

__all__ = ["RateLimiter", "TokenBucket"]

#: Most buckets kept at once; the least recently used go first beyond it.
MAX_BUCKETS = 100_000


@dataclass(slots=True)
class TokenBucket:
    """`burst` tokens, refilled continuously at `rate` per second."""

    rate: float
    burst: float
    tokens: float
    #: The clock reading `tokens` was computed at.
    updated: float

    @classmethod
    def full(cls, config: RateConfig, now: float) -> TokenBucket:
        burst = float(config.burst)
        return cls(config.requests_per_second, burst, burst, now)

    def take(self, now: float) -> float:
        """Take a token: 0.0 when taken, else the seconds until one is there."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def idle(self, now: float) -> bool:
        """Full again by now: indistinguishable from a new bucket."""
        return self.tokens + (now - self.updated) * self.rate >= self.burst


class RateLimiter:
    """The buckets of `[gateway.rate_limit]`, one per identity and pattern."""

    def __init__(
        self,
        config: RateLimitConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.config = config
        self._clock = clock
        self._max_buckets = max_buckets
        self._overrides = list(config.tools.items())
        #: (identity, pattern or None for the default) -> bucket, least recently used first.
        self._buckets: OrderedDict[tuple[str, str | None], TokenBucket] = OrderedDict()
        self._patterns: dict[str, str | None] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def pattern_for(self, tool: str) -> str | None:
        """The first `tools` pattern that matches an exposed name; None is the default."""
        try:
            return self._patterns[tool]
        except KeyError:
            pass
        found = next((p for p, _ in self._overrides if fnmatchcase(tool, p)), None)
        if len(self._patterns) >= 4096:  # names come from the catalog, but stay bounded
            self._patterns.clear()
        self._patterns[tool] = found
        return found

    def check(self, identity: str, tool: str) -> None:
        """Take a token for one call, or raise `RateLimited` saying when to retry."""
        now = self._clock()
        pattern = self.pattern_for(tool)
        key = (identity, pattern)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._evict(now)
            rate = self.config if pattern is None else self.config.tools[pattern]
            bucket = self._buckets[key] = TokenBucket.full(rate, now)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        if wait > 0.0:
            retry_after = math.ceil(wait * 100) / 100  # by then a token is there
            scope = "" if pattern is None else f" on tools {pattern!r}"
            raise RateLimited(
                f"rate limit for client {identity!r}{scope} exceeded: retry in {retry_after:.2f} s",
                retry_after=retry_after,
            )

    def _evict(self, now: float) -> None:
        """Drop idle buckets from the least recently used end, and any beyond the cap."""
        buckets = self._buckets
        while buckets:
            key, oldest = next(iter(buckets.items()))
            if len(buckets) < self._max_buckets and not oldest.idle(now):
                break
            del buckets[key]
