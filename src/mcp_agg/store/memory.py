"""The embedded store: one replica's state, in process (no `[gateway.store]`)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from mcp_agg.security.ratelimit import TokenBucket
from mcp_agg.store.base import Registration

__all__ = ["MemoryStore"]

#: Most buckets and revocations kept at once; the least recently used go first.
MAX_ENTRIES = 100_000

#: A kept response: the clock reading at which it lapses, the response, its tag.
_Kept = tuple[float, str, str | None]


class MemoryStore:
    """`Store` in process: token buckets, revocations with their expiry, registrations,
    secrets."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES
    ) -> None:
        self._clock = clock
        self._max = max_entries
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        #: key -> clock reading at which the revocation lapses.
        self._revoked: OrderedDict[str, float] = OrderedDict()
        self._registrations: dict[str, str] = {}
        #: Secrets (per-user backend tokens, sealed by their owner): never evicted.
        self._secrets: dict[str, bytes] = {}
        self._watchers: set[MemoryObjectSendStream[Registration]] = set()
        #: (space, key) -> the response kept; the least recently kept go first beyond
        #: `max_entries`.
        self._responses: OrderedDict[tuple[str, str], _Kept] = OrderedDict()

    def __len__(self) -> int:
        """Buckets kept (a bucket idle long enough to be full again is dropped)."""
        return len(self._buckets)

    async def take_token(self, key: str, rate: float, burst: float) -> float:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            self._evict_buckets(now)
            bucket = self._buckets[key] = TokenBucket(rate, burst, burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def _evict_buckets(self, now: float) -> None:
        """Drop idle buckets from the least recently used end, and any beyond the cap."""
        buckets = self._buckets
        while buckets:
            key, oldest = next(iter(buckets.items()))
            if len(buckets) < self._max and not oldest.idle(now):
                break
            del buckets[key]

    async def revoke(self, key: str, ttl: float) -> bool:
        if await self.is_revoked(key):
            return False
        now = self._clock()
        revoked = self._revoked
        while revoked and (len(revoked) >= self._max or next(iter(revoked.values())) <= now):
            revoked.popitem(last=False)
        revoked.pop(key, None)
        if ttl <= 0:
            return False  # lapsed already
        revoked[key] = now + ttl if math.isfinite(ttl) else math.inf
        return True

    async def is_revoked(self, key: str) -> bool:
        until = self._revoked.get(key)
        return until is not None and until > self._clock()

    async def registrations(self) -> dict[str, str]:
        return dict(self._registrations)

    async def put_registration(self, name: str, entry: str | None) -> None:
        if entry is None:
            self._registrations.pop(name, None)
        else:
            self._registrations[name] = entry
        for watcher in list(self._watchers):
            try:
                watcher.send_nowait(Registration(name, entry))
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._watchers.discard(watcher)

    async def watch_registrations(self) -> AsyncIterator[Registration]:
        send, receive = anyio.create_memory_object_stream[Registration](256)
        self._watchers.add(send)
        try:
            async with receive:
                async for change in receive:
                    yield change
        finally:
            self._watchers.discard(send)
            send.close()

    async def get_secret(self, key: str) -> bytes | None:
        return self._secrets.get(key)

    async def put_secret(self, key: str, value: bytes) -> None:
        self._secrets[key] = value

    async def delete_secret(self, key: str) -> None:
        self._secrets.pop(key, None)

    async def cached(self, space: str, key: str, tag: str | None = None) -> str | None:
        kept = self._responses.get((space, key))
        if kept is None or kept[0] <= self._clock() or kept[2] != tag:
            return None
        return kept[1]

    async def keep(
        self, space: str, key: str, value: str, ttl: float, tag: str | None = None
    ) -> None:
        self._responses.pop((space, key), None)
        self._responses[(space, key)] = (self._clock() + ttl, value, tag)
        while len(self._responses) > self._max:
            self._responses.popitem(last=False)

    async def clear(self, space: str, tag: str | None = None) -> None:
        for entry, kept in list(self._responses.items()):
            if entry[0] == space and (tag is None or kept[2] == tag):
                del self._responses[entry]

    async def aclose(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        self._watchers.clear()
