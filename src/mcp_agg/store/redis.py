"""`Store` in Redis (`[gateway.store]`): the state every replica of a fleet shares.

Keys, all under `mcp-agg:`:

- `mcp-agg:bucket:<identity>|<pattern>`: a token bucket (hash: `tokens`, `updated`),
  expiring once it has been idle long enough to be full again;
- `mcp-agg:revoked:<key>`: a revocation, with the revocation's TTL;
- `mcp-agg:registrations`: servers registered through the admin API (hash: name ->
  `[[servers]]` entry as JSON); each change is also published on the channel of the
  same name, which `watch_registrations` listens to;
- `mcp-agg:cache:<space>`: the generation of a server's cached responses (`clear`
  increments it), and `mcp-agg:cache:<space>:<generation>:<key>` a response, with its
  TTL; an older generation's responses are never read again and lapse by themselves.
  A response kept with a tag (a resource's) has a generation of that tag's too,
  `mcp-agg:cache:<space>:<generation>:tag:<tag>` (`clear` with the tag increments it),
  in its name: `mcp-agg:cache:<space>:<generation>:<tag generation>:<key>`. A tag's
  generation lives as long as the longest-lived response kept with it, so that it
  never starts over at 0 while a response of an older one is there to be read;
- `mcp-agg:secret:<key>`: a secret (per-user backend tokens, Fernet-sealed by
  `backend/oauth/peruser.py` before they get here), base64 (the client decodes
  responses as text), kept until deleted.

Rate limits are one Lua script (EVALSHA through redis-py's `register_script`): the
token bucket of `security/ratelimit.py`, read, refilled, taken from and written back
atomically, on Redis's own clock (`TIME`), so replicas with drifting clocks share one
bucket exactly. Not a rate-limit library: `limits`, the maintained one with Redis
storage, has fixed-window, moving-window and sliding-window-counter strategies but no
token bucket, so its answers would differ from the in-process limiter's (a burst, then
one call per 1/rate s) and its reset time is a window's end, not our retry-after.

Every operation is bounded by `timeout`: the sockets' timeouts, and a deadline around
the whole operation (a stopped Redis holds a connection open without answering), with
redis-py's own retries off (each would start the timeout over). Any failure is raised
as `StoreUnavailable`, naming the store without its password.
"""

from __future__ import annotations

import json
import logging
import math
from base64 import b64decode, b64encode
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from mcp_agg.config import StoreConfig
from mcp_agg.errors import StoreUnavailable
from mcp_agg.security.redact import redact
from mcp_agg.store.base import Registration

__all__ = ["PREFIX", "RedisStore", "store_address"]

logger = logging.getLogger(__name__)

PREFIX = "mcp-agg:"
_REGISTRATIONS = f"{PREFIX}registrations"
_SECRET = f"{PREFIX}secret:"
_CACHE = f"{PREFIX}cache:"
#: How long `watch_registrations` waits before subscribing again after a failure.
_RESUBSCRIBE = 1.0

_T = TypeVar("_T")

#: KEYS[1]: the space's generation; ARGV: the key, the tag ("" for none). One round trip
#: for the generations and the response.
_CACHED = """
local name = KEYS[1] .. ':' .. (redis.call('GET', KEYS[1]) or '0') .. ':'
if ARGV[2] ~= '' then
  name = name .. (redis.call('GET', name .. 'tag:' .. ARGV[2]) or '0') .. ':'
end
return redis.call('GET', name .. ARGV[1])
"""

#: KEYS[1]: the space's generation; ARGV: the key, the value, the TTL in milliseconds,
#: the tag ("" for none). The tag's generation is made to outlive the response.
_KEEP = """
local name = KEYS[1] .. ':' .. (redis.call('GET', KEYS[1]) or '0') .. ':'
local ttl = tonumber(ARGV[3])
if ARGV[4] ~= '' then
  local tag = name .. 'tag:' .. ARGV[4]
  local generation = redis.call('GET', tag)
  if not generation then
    generation = '0'
    redis.call('SET', tag, generation, 'PX', ttl)
  elseif redis.call('PTTL', tag) < ttl then
    redis.call('PEXPIRE', tag, ttl)
  end
  name = name .. generation .. ':'
end
redis.call('SET', name .. ARGV[1], ARGV[2], 'PX', ttl)
"""

#: KEYS[1]: the space's generation; ARGV[1]: the tag. A tag without a generation has no
#: responses kept in this generation of the space: nothing to clear (INCR would make
#: a generation that never lapses).
_CLEAR_TAG = """
local tag = KEYS[1] .. ':' .. (redis.call('GET', KEYS[1]) or '0') .. ':tag:' .. ARGV[1]
if redis.call('EXISTS', tag) == 1 then
  redis.call('INCR', tag)
end
"""

#: KEYS[1]: the bucket; ARGV: rate (tokens per second), burst. Returns the seconds until
#: a token is there ("0" when one was taken), as a string: Redis would truncate a Lua
#: number to an integer.
_TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
  updated = now
end
if now > updated then
  tokens = math.min(burst, tokens + (now - updated) * rate)
  updated = now
end
tokens = math.min(tokens, burst)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'updated', string.format('%.17g', updated))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return string.format('%.17g', wait)
"""


def store_address(url: str) -> str:
    """The store's URL as logs show it: scheme, host, port and database, no password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    return f"{parts.scheme}://{host}:{port}{parts.path}"


class RedisStore:
    """`Store` on redis-py's asyncio client (module docstring)."""

    def __init__(self, config: StoreConfig) -> None:
        self.address = store_address(config.url)
        self._timeout = config.timeout
        # redis-py retries a failed command 3 times by default, each bounded by the
        # socket timeout: a dead Redis would hold every call for 4 timeouts. One try;
        # the fail-safe wrapper (store/failsafe.py) decides when to try again.
        self._redis = Redis.from_url(
            config.url,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._take = self._redis.register_script(_TAKE_TOKEN)
        self._cached = self._redis.register_script(_CACHED)
        self._keep = self._redis.register_script(_KEEP)
        self._clear_tag = self._redis.register_script(_CLEAR_TAG)

    async def _bounded(self, what: str, operation: Callable[[], Awaitable[_T]]) -> _T:
        """`operation` within the timeout, its failures as `StoreUnavailable`."""
        try:
            with anyio.fail_after(self._timeout):
                return await operation()
        except TimeoutError:
            raise StoreUnavailable(
                f"store {self.address} unreachable: {what} got no answer within {self._timeout:g} s"
            ) from None
        except (RedisError, OSError) as exc:
            # redis-py's messages name host and port only; redacted all the same.
            raise StoreUnavailable(
                redact(f"store {self.address} unreachable: {what} failed: {exc}")
            ) from None

    async def take_token(self, key: str, rate: float, burst: float) -> float:
        bucket = f"{PREFIX}bucket:{key}"
        wait = await self._bounded(
            "a rate-limit token", lambda: self._take(keys=[bucket], args=[rate, burst])
        )
        return float(cast("str", wait))

    async def revoke(self, key: str, ttl: float) -> bool:
        name = f"{PREFIX}revoked:{key}"
        expiry = math.ceil(ttl * 1000) if math.isfinite(ttl) else None
        if expiry is not None and expiry <= 0:
            return False  # lapsed already (as in MemoryStore); Redis refuses an expiry of 0
        # NX: one atomic step decides who revoked it first (a check, then a set, would
        # let two replicas both win).
        done = await self._bounded(
            "a revocation", lambda: self._redis.set(name, "1", px=expiry, nx=True)
        )
        return bool(done)

    async def is_revoked(self, key: str) -> bool:
        found = await self._bounded(
            "a revocation check", lambda: self._redis.exists(f"{PREFIX}revoked:{key}")
        )
        return bool(found)

    async def registrations(self) -> dict[str, str]:
        found = await self._bounded(
            "the registered servers", lambda: self._redis.hgetall(_REGISTRATIONS)
        )
        return dict(cast("dict[str, str]", found))

    async def put_registration(self, name: str, entry: str | None) -> None:
        async def put() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                if entry is None:
                    pipe.hdel(_REGISTRATIONS, name)
                else:
                    pipe.hset(_REGISTRATIONS, name, entry)
                pipe.publish(_REGISTRATIONS, json.dumps({"name": name, "entry": entry}))
                await pipe.execute()

        await self._bounded("a registration", put)

    async def watch_registrations(self) -> AsyncGenerator[Registration, None]:
        """Changes as they are published. After subscribing (again, once the connection
        dropped), the registrations as they are then are compared with those last seen
        and the differences yielded: nothing said while it was not listening is lost.
        The first subscription yields every registration (applying one twice is
        harmless: `core/registry.py` skips what it runs already)."""
        known: dict[str, str] = {}
        failing = False
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await self._bounded("a subscription", lambda: pubsub.subscribe(_REGISTRATIONS))
                    current = await self.registrations()
                    if failing:
                        logger.info("store %s: watching registrations again", self.address)
                        failing = False
                    for name in known.keys() - current.keys():
                        yield Registration(name, None)
                    for name, entry in current.items():
                        if known.get(name) != entry:
                            yield Registration(name, entry)
                    known = current
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=None
                        )
                        change = _registration(message)
                        if change is None:
                            continue
                        if change.entry is None:
                            known.pop(change.name, None)
                        else:
                            known[change.name] = change.entry
                        yield change
            except (StoreUnavailable, RedisError, OSError) as exc:
                if not failing:
                    problem = (
                        exc
                        if isinstance(exc, StoreUnavailable)
                        else (f"store {self.address} unreachable: {exc}")
                    )
                    logger.warning(
                        "%s; registration changes unheard until it is back",
                        redact(str(problem)),
                    )
                    failing = True
            await anyio.sleep(_RESUBSCRIBE)

    async def get_secret(self, key: str) -> bytes | None:
        found = await self._bounded("a secret", lambda: self._redis.get(f"{_SECRET}{key}"))
        return None if found is None else b64decode(cast("str", found))

    async def put_secret(self, key: str, value: bytes) -> None:
        text = b64encode(value).decode("ascii")
        await self._bounded("a secret", lambda: self._redis.set(f"{_SECRET}{key}", text))

    async def delete_secret(self, key: str) -> None:
        await self._bounded("a secret", lambda: self._redis.delete(f"{_SECRET}{key}"))

    async def cached(self, space: str, key: str, tag: str | None = None) -> str | None:
        found = await self._bounded(
            "a cached response",
            lambda: self._cached(keys=[f"{_CACHE}{space}"], args=[key, tag or ""]),
        )
        return None if found is None else str(found)

    async def keep(
        self, space: str, key: str, value: str, ttl: float, tag: str | None = None
    ) -> None:
        ms = max(1, math.ceil(ttl * 1000))
        await self._bounded(
            "a cached response",
            lambda: self._keep(keys=[f"{_CACHE}{space}"], args=[key, value, ms, tag or ""]),
        )

    async def clear(self, space: str, tag: str | None = None) -> None:
        generation = f"{_CACHE}{space}"
        if tag is None:
            await self._bounded("a cache generation", lambda: self._redis.incr(generation))
        else:
            await self._bounded(
                "a cache generation", lambda: self._clear_tag(keys=[generation], args=[tag])
            )

    async def aclose(self) -> None:
        await self._redis.aclose()


def _registration(message: dict[str, Any] | None) -> Registration | None:
    """A published change, or None for anything else on the channel."""
    if message is None or message.get("type") != "message":
        return None
    try:
        data = json.loads(message["data"])
        name, entry = data["name"], data["entry"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(name, str) or not (entry is None or isinstance(entry, str)):
        return None
    return Registration(name, entry)
