"""Rate limits per client identity: token buckets, with per-tool overrides.

`[gateway.rate_limit]` gives every client identity a bucket of `burst` tokens refilled
at `requests_per_second`; a call takes one token, and a call that finds less than one
is refused with the time until one is there. `[gateway.rate_limit.tools]` maps glob
patterns over exposed tool names to buckets of their own: a call to a matching tool
(the first pattern that matches, in order) takes its token from the bucket of that
identity and pattern instead of the identity's default bucket.

The buckets are kept by the gateway's store (`mcp_agg.store`): in process without
`[gateway.store]` (`MemoryStore`, bounded: a bucket idle long enough to be full again is
dropped, and beyond its cap the least recently used go first), in Redis with it, where
every replica takes from the same bucket and a limit holds for the whole fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from mcp_agg.config import RateConfig, RateLimitConfig
from mcp_agg.errors import LimitUnchecked, RateLimited, StoreUnavailable

if TYPE_CHECKING:
    from mcp_agg.store.base import Store

__all__ = ["RateLimiter", "TokenBucket"]


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
    """The buckets of `[gateway.rate_limit]`, one per identity and pattern, in `store`."""

    def __init__(self, config: RateLimitConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self._overrides = list(config.tools.items())
        self._patterns: dict[str, str | None] = {}

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

    async def check(self, identity: str, tool: str) -> None:
        """Take a token for one call, or raise `RateLimited` saying when to retry
        (`LimitUnchecked` when the store cannot say: `store_failure = "closed"`)."""
        pattern = self.pattern_for(tool)
        rate = self.config if pattern is None else self.config.tools[pattern]
        scope = "" if pattern is None else f" on tools {pattern!r}"
        try:
            wait = await self.store.take_token(
                f"{identity}|{pattern or ''}", rate.requests_per_second, float(rate.burst)
            )
        except StoreUnavailable as exc:
            raise LimitUnchecked(
                f"rate limit for client {identity!r}{scope} cannot be checked ({exc}): "
                'call refused (store_failure = "closed")'
            ) from None
        if wait > 0.0:
            retry_after = math.ceil(wait * 100) / 100  # by then a token is there
            raise RateLimited(
                f"rate limit for client {identity!r}{scope} exceeded: retry in {retry_after:.2f} s",
                retry_after=retry_after,
            )
