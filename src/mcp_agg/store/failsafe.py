"""What a replica does while the shared store is unreachable (`store_failure`).

A store that fails is said once, at WARNING, and once again, at INFO, when it is back;
never once per call. Meanwhile it is not asked on every call (each would wait for the
timeout first): it is tried again after `RETRY_AFTER` seconds, by one call, while the
others go on without it.

While it is down:

- rate limits: `store_failure = "open"` takes tokens from this replica's own buckets
  (limits per replica until the store is back); `"closed"` raises `StoreUnavailable`,
  which the rate limiter turns into a refusal of the call;
- revocations are kept, and checked, in this replica's memory as well (in both modes:
  closing would refuse every session of the fleet);
- registrations are not available (the admin API answers 503), and
  `watch_registrations` catches up by itself once the store is back;
- secrets (per-user backend tokens) are not available: a sign-in kept in one
  replica's memory would be missing on the others;
- cached responses are misses (the calls go to the backends), kept responses are not
  kept, and a clear is lost (the entries lapse with their TTL).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal, TypeVar

from mcp_agg.errors import StoreUnavailable
from mcp_agg.store.base import Registration, Store
from mcp_agg.store.memory import MemoryStore

__all__ = ["RETRY_AFTER", "FailSafeStore"]

logger = logging.getLogger(__name__)

#: Seconds after a failure before the store is tried again.
RETRY_AFTER = 1.0

_T = TypeVar("_T")


class FailSafeStore:
    """`Store` over the shared one, with this replica's `MemoryStore` to fall back on."""

    def __init__(
        self,
        shared: Store,
        *,
        address: str,
        failure: Literal["open", "closed"],
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.address = address
        self.failure = failure
        self.local = MemoryStore(clock=clock)
        self._retry_after = retry_after
        self._clock = clock
        #: Why the store is down (its last error), or None while it answers.
        self._down: StoreUnavailable | None = None
        #: Clock reading from which the next call tries the store again.
        self._retry_at = 0.0

    @property
    def available(self) -> bool:
        """Whether the store answered the last time it was asked."""
        return self._down is None

    async def _shared(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        """`operation` on the shared store, unless it is down and not yet due a retry."""
        down = self._down
        if down is not None:
            now = self._clock()
            if now < self._retry_at:
                raise down
            self._retry_at = now + self._retry_after  # one call tries; the rest go on
        try:
            value = await operation()
        except StoreUnavailable as exc:
            self._failed(exc)
            raise
        if self._down is not None:
            self._down = None
            logger.info("store %s is back: rate limits are fleet-wide again", self.address)
        return value

    def _failed(self, exc: StoreUnavailable) -> None:
        self._retry_at = self._clock() + self._retry_after
        if self._down is None:
            logger.warning("%s; %s", exc, self._meanwhile())  # exc: "store ... unreachable: ..."
        self._down = exc

    def _meanwhile(self) -> str:
        if self.failure == "open":
            return "rate limits per replica until it is back (store_failure = open)"
        return "rate-limited calls refused until it is back (store_failure = closed)"

    async def take_token(self, key: str, rate: float, burst: float) -> float:
        try:
            return await self._shared(lambda: self.shared.take_token(key, rate, burst))
        except StoreUnavailable:
            if self.failure == "closed":
                raise
            return await self.local.take_token(key, rate, burst)

    async def revoke(self, key: str, ttl: float) -> bool:
        first = await self.local.revoke(key, ttl)  # known here at once, whatever the store says
        # Said once by _failed; meanwhile this replica refuses the key on its own (and
        # decides alone who was first).
        with contextlib.suppress(StoreUnavailable):
            first = await self._shared(lambda: self.shared.revoke(key, ttl)) and first
        return first

    async def is_revoked(self, key: str) -> bool:
        if await self.local.is_revoked(key):
            return True
        try:
            return await self._shared(lambda: self.shared.is_revoked(key))
        except StoreUnavailable:
            return False

    async def registrations(self) -> dict[str, str]:
        return await self._shared(self.shared.registrations)

    async def put_registration(self, name: str, entry: str | None) -> None:
        await self._shared(lambda: self.shared.put_registration(name, entry))

    async def get_secret(self, key: str) -> bytes | None:
        return await self._shared(lambda: self.shared.get_secret(key))

    async def put_secret(self, key: str, value: bytes) -> None:
        await self._shared(lambda: self.shared.put_secret(key, value))

    async def delete_secret(self, key: str) -> None:
        await self._shared(lambda: self.shared.delete_secret(key))

    async def cached(self, space: str, key: str, tag: str | None = None) -> str | None:
        try:
            return await self._shared(lambda: self.shared.cached(space, key, tag))
        except StoreUnavailable:
            return None  # a miss: the call goes to the backend

    async def keep(
        self, space: str, key: str, value: str, ttl: float, tag: str | None = None
    ) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._shared(lambda: self.shared.keep(space, key, value, ttl, tag))

    async def clear(self, space: str, tag: str | None = None) -> None:
        # Lost while the store is down: the entries then lapse with their TTL.
        with contextlib.suppress(StoreUnavailable):
            await self._shared(lambda: self.shared.clear(space, tag))

    def watch_registrations(self) -> AsyncIterator[Registration]:
        return self.shared.watch_registrations()

    async def aclose(self) -> None:
        await self.shared.aclose()
        await self.local.aclose()
