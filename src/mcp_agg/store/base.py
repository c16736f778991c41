"""The seam between the gateway and its shared state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Registration", "Store"]


@dataclass(frozen=True, slots=True)
class Registration:
    """A change to the servers registered through the admin API: `entry` is the
    `[[servers]]` entry as JSON, None when the server was unregistered."""

    name: str
    entry: str | None


class Store(Protocol):
    """What the gateway keeps for the whole fleet.

    Every method may raise `StoreUnavailable` (mcp_agg.errors) when the store cannot be
    reached within its timeout, its message starting "store <address> unreachable: ";
    what a caller does then is `store_failure`'s to say.
    """

    async def take_token(self, key: str, rate: float, burst: float) -> float:
        """Take one token from the bucket `key` (`burst` tokens, refilled at `rate` per
        second): 0.0 when taken, else the seconds until one is there."""
        ...

    async def revoke(self, key: str, ttl: float) -> bool:
        """Remember `key` as revoked for `ttl` seconds; whether this call revoked it (it
        was not revoked already), atomically, so of replicas racing to revoke one key
        exactly one is told it was first (a sign-in state used once, front/signin.py)."""
        ...

    async def is_revoked(self, key: str) -> bool:
        """Whether `key` was revoked (and its `ttl` has not passed)."""
        ...

    async def registrations(self) -> dict[str, str]:
        """Every server registered through the admin API: name -> entry as JSON."""
        ...

    async def put_registration(self, name: str, entry: str | None) -> None:
        """Register (`entry` as JSON) or unregister (None) a server, and tell every
        replica watching."""
        ...

    def watch_registrations(self) -> AsyncIterator[Registration]:
        """The registrations changed from now on, by any replica (this one included)."""
        ...

    async def get_secret(self, key: str) -> bytes | None:
        """The secret kept under `key` (already encrypted by its owner), if any."""
        ...

    async def put_secret(self, key: str, value: bytes) -> None:
        """Keep `value` under `key`, replacing what was there; kept until deleted."""
        ...

    async def delete_secret(self, key: str) -> None:
        """Forget the secret under `key` (nothing happens if there is none)."""
        ...

    async def cached(self, space: str, key: str, tag: str | None = None) -> str | None:
        """The response kept under `key` in `space` (a server's responses), while its TTL
        lasts and neither `space` nor its `tag` was cleared since (`mcp_agg.core.cache`);
        a response kept with a `tag` is asked for with that tag."""
        ...

    async def keep(
        self, space: str, key: str, value: str, ttl: float, tag: str | None = None
    ) -> None:
        """Keep the response `value` under `key` in `space` for `ttl` seconds, as part of
        `tag` (a resource's responses) if given."""
        ...

    async def clear(self, space: str, tag: str | None = None) -> None:
        """Forget every response of `space`, or only those kept with `tag`, for every
        replica."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
