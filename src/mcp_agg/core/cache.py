"""The response cache: results the gateway may answer again without asking the backend.

A `resources/read` result is kept as long as its backend's 2026-07-28 hints allow
(`ttlMs` above 0; shared with every caller only when `cacheScope` is `public`).

A `tools/call` is answered from the cache only where that is safe (docs/caching.md):

- the operator allowed it: the server's `cache` table names the tool (`tools` patterns),
  and the tool is read-only (the backend's `readOnlyHint`, or the operator's
  `read_only_tools`; a tool that changes something is never cached, whatever the
  patterns say). The 2026-07-28 spec puts cache hints on lists and reads, not on tool
  results; a tool result that carries them anyway can only shorten the entry's life
  (`ttlMs`) or keep it out of a shared entry (`cacheScope: "private"`);
- the result is a complete, successful one: an error, an `isError` result or an
  interim (`input_required`) one is never kept;
- the caller did not ask for fresh data (`_meta: {"mcp-agg/cache": false}`).

Concurrent misses of one key are coalesced (single flight, in process): the first makes
the backend call, the others wait for it and get its answer, or its error (an error is
never kept). A waiter that gives up (cancelled, its deadline) leaves the call to the
others; when the leader is cancelled, its waiters try again, one of them leading.

Entries are keyed by server, original tool name and the arguments as canonical JSON,
and for a `private` rule by the caller too (`owner`): two users never share one. They
are bounded by count and by bytes, least recently used out first, and forgotten when
their server's listing or state changes (`forget`). With `[gateway.store]` they are in
the fleet's store instead (`Store.cached`/`keep`/`clear`), shared by every replica and
cleared for all of them (`clear`: a server's, or one resource's reads); an unreachable
store is a miss.

For calls, the cache is a stage of the call pipeline (`mcp_agg.core.pipeline`) that
exists only when some server has a `cache` table: without one, the call path is
unchanged. A read looks in an in-process cache only while it holds something.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import mcp_types
from fastmcp.server.dependencies import get_context

from mcp_agg.security.auth import ANONYMOUS, caller_id, current_user

if TYPE_CHECKING:
    from mcp_agg.config import AuthConfig, Config
    from mcp_agg.config.cache import CacheLimitsConfig, ServerCacheConfig
    from mcp_agg.core.pipeline import Next, ToolCall
    from mcp_agg.store.base import Store

__all__ = [
    "BYPASS_META_KEY",
    "CacheRule",
    "CacheStats",
    "Caching",
    "ResponseCache",
    "bypassed",
    "private_owner",
    "request_meta",
    "tool_rule",
]

#: The request `_meta` key a client sets to `false` to get a fresh answer (the result is
#: then kept for the next caller as usual).
BYPASS_META_KEY = "mcp-agg/cache"


@dataclass(frozen=True, slots=True)
class CacheRule:
    """How a tool's results may be kept: seconds fresh, and who may share an entry."""

    ttl: float
    scope: Literal["private", "public"]


def tool_rule(
    tool: str,
    annotations: mcp_types.ToolAnnotations | None,
    config: ServerCacheConfig | None,
) -> CacheRule | None:
    """The rule for the backend's `tool` under its server's `cache` setting; None: never
    cached (not named by the operator, or not read-only)."""
    if config is None or not _matches(tool, config.tools):
        return None
    read_only = _matches(tool, config.read_only_tools) or bool(
        annotations is not None and annotations.read_only_hint
    )
    return CacheRule(config.ttl, config.scope) if read_only else None


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def bypassed(meta: Mapping[str, Any] | None) -> bool:
    """Whether the request's `_meta` asks for a fresh answer."""
    return meta is not None and meta.get(BYPASS_META_KEY) is False


@dataclass(slots=True)
class CacheStats:
    """Counts since start, for the metrics."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    #: Misses answered by another caller's backend call of the same key.
    coalesced: int = 0


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    value: Any
    size: int


#: (owner, server, method, original tool name or backend URI, arguments as canonical
#: JSON); owner "" is public.
_Key = tuple[str, str, str, str, str]


@dataclass(slots=True, eq=False)
class _Flight:
    """One backend call that concurrent calls of its key wait for. When `done` is set
    it holds the leader's `answer` (its call's `relayed` and the wire result it got, see
    `ToolCall`) or its `error`; with neither, the leader was cancelled."""

    done: anyio.Event = field(default_factory=anyio.Event)
    answer: tuple[dict[str, Any] | None, dict[str, Any]] | None = None
    error: Exception | None = None

    def answer_for(self, call: ToolCall) -> dict[str, Any] | None:
        """The leader's answer as `call`'s own (its error raised); None: try again."""
        if self.error is not None:
            raise self.error
        if self.answer is None:
            return None
        relayed, wire = self.answer
        call.relayed = None if relayed is None else {**relayed}
        return call.relayed if wire is relayed and call.relayed is not None else {**wire}


_CALL = "tools/call"
_READ = "resources/read"


class ResponseCache:
    """Results by key, bounded by entries and bytes (LRU), each fresh for its TTL."""

    def __init__(
        self,
        limits: CacheLimitsConfig,
        clock: Callable[[], float] = time.monotonic,
        stats: CacheStats | None = None,
    ) -> None:
        self.max_entries = limits.max_entries
        self.max_bytes = limits.max_bytes
        #: Counts since start (kept across a change of bounds).
        self.stats = CacheStats() if stats is None else stats
        self._clock = clock
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held (the entries' JSON)."""
        return self._bytes

    def get(self, *keys: _Key) -> Any | None:
        """The value of the first of `keys` that is fresh (one hit or one miss)."""
        now = self._clock()
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and entry.expires > now:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return entry.value
            if entry is not None:
                self._drop(key)
        self.stats.misses += 1
        return None

    def put(self, key: _Key, value: Any, ttl: float, size: int) -> None:
        """Keep `value` (`size` bytes as JSON) for `ttl` seconds."""
        if size > self.max_bytes:
            return  # would push out everything else for one entry
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(self._clock() + ttl, value, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.stats.evictions += 1

    def forget(self, server: str, uri: str | None = None) -> None:
        """Drop every entry of `server` (its listing changed, or it reconnected), or
        only its reads of `uri` (the backend said the resource was updated)."""
        for key in [
            key
            for key in self._entries
            if key[1] == server and (uri is None or key[2:4] == (_READ, uri))
        ]:
            self._drop(key)

    def _drop(self, key: _Key) -> None:
        self._bytes -= self._entries.pop(key).size


class Caching:
    """The gateway's response cache: the call pipeline's stage (`__call__`), a resource
    read (`read`), and what forgets entries (`forget`).

    A `private` entry belongs to its caller (`private_owner`); a caller who cannot be
    told from others (anonymous on HTTP) gets no private entries at all.
    """

    def __init__(
        self,
        config: Config,
        shared: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = ResponseCache(config.gateway.cache, clock)
        #: The fleet's store with `[gateway.store]` (read once at startup, as the store
        #: is): entries there, shared by every replica; None: entries in `store`.
        self.shared = shared if config.gateway.store is not None else None
        self._clock = clock
        self.auth: AuthConfig | None = None
        #: Whether the call pipeline needs this stage: some server has a `cache` table.
        self.caches_calls = False
        #: Backend calls of cacheable misses in progress, by key (coalescing).
        self._flights: dict[_Key, _Flight] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        """`config`'s settings; entries are kept unless the bounds changed."""
        limits = config.gateway.cache
        if (limits.max_entries, limits.max_bytes) != (self.store.max_entries, self.store.max_bytes):
            self.store = ResponseCache(limits, self._clock, self.store.stats)
        self.auth = config.gateway.auth
        self.caches_calls = any(server.cache is not None for server in config.servers)

    def forget(self, server: str, uri: str | None = None) -> None:
        """Drop this replica's entries of `server` (or of its resource `uri`); a shared
        cache is cleared by `clear`."""
        self.store.forget(server, uri)

    async def clear(self, server: str, uri: str | None = None) -> None:
        """Drop `server`'s entries (or its reads of its resource `uri`) in the shared
        store, for every replica."""
        if self.shared is not None:
            await self.shared.clear(server, None if uri is None else _tag(uri))

    async def __call__(self, call: ToolCall, call_next: Next) -> dict[str, Any]:
        rule: CacheRule | None = getattr(call.tool, "cache_rule", None)
        if rule is None:
            return await call_next(call)
        owner = "" if rule.scope == "public" else private_owner(self.auth)
        if owner is None:
            return await call_next(call)
        original = getattr(call.tool, "original", call.tool.name)
        key = (owner, call.tool.server, _CALL, original, _canonical(call.arguments))
        # The front hands over the request's `_meta`; on FastMCP's own path (middleware,
        # search mode's call tool) it is the request in FastMCP's context.
        if bypassed(call.meta if call.meta is not None else request_meta()):
            return await self._fetch(key, rule, call, call_next)
        kept = await self._get([key], json.loads)
        if kept is not None:
            call.relayed = {**kept}
            return call.relayed
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()  # a waiter's cancellation leaves the flight alone
            wire = flight.answer_for(call)
            if wire is not None:
                self.store.stats.coalesced += 1
                return wire
        flight = self._flights[key] = _Flight()
        try:
            return await self._fetch(key, rule, call, call_next, flight)
        except Exception as exc:  # a cancellation is not caught: its waiters try again
            if flight.answer is None:  # else it failed keeping an answer they have
                flight.error = exc
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()

    async def _fetch(
        self,
        key: _Key,
        rule: CacheRule,
        call: ToolCall,
        call_next: Next,
        flight: _Flight | None = None,
    ) -> dict[str, Any]:
        """The backend's answer to `call`, kept if it may be; told to `flight`'s waiters
        before it is kept (they need not wait for a shared store)."""
        wire = await call_next(call)
        if flight is not None:
            flight.answer = (call.relayed, wire)
            flight.done.set()
        ttl = _keepable(wire, rule)
        if ttl is not None and wire is call.relayed:  # not refused on the way up (size)
            await self._put(key, wire, json.dumps(wire, separators=(",", ":")), ttl)
        return wire

    async def read(
        self,
        server: str,
        uri: str,
        fetch: Callable[[], Awaitable[mcp_types.ReadResourceResult]],
    ) -> mcp_types.ReadResourceResult:
        """`server`'s resource `uri`, kept for as long as the backend's hints allow: its
        `ttlMs`, shared with every caller if its `cacheScope` is `public`, else the
        caller's own. Nothing is looked up while an in-process cache is empty."""
        if (self.shared is not None or len(self.store)) and not bypassed(request_meta()):
            owner = private_owner(self.auth)
            keys = [("", server, _READ, uri, "")]
            if owner is not None:
                keys.append((owner, server, _READ, uri, ""))
            kept: mcp_types.ReadResourceResult | None = await self._get(
                keys, mcp_types.ReadResourceResult.model_validate_json
            )
            if kept is not None:
                return kept
        raw = await fetch()
        ttl = raw.ttl_ms
        if ttl and ttl > 0 and raw.result_type in (None, "complete"):
            owner = "" if raw.cache_scope == "public" else private_owner(self.auth)
            if owner is not None:
                text = raw.model_dump_json(by_alias=True, exclude_none=True)
                await self._put((owner, server, _READ, uri, ""), raw, text, ttl / 1000)
        return raw

    async def _get(self, keys: Sequence[_Key], decode: Callable[[str], Any]) -> Any | None:
        """The value of the first of `keys` that is kept (one hit or one miss)."""
        if self.shared is None:
            return self.store.get(*keys)
        stats = self.store.stats
        for key in keys:
            text = await self.shared.cached(key[1], _digest(key), _tag_of(key))
            if text is not None:
                stats.hits += 1
                return decode(text)
        stats.misses += 1
        return None

    async def _put(self, key: _Key, value: Any, text: str, ttl: float) -> None:
        """Keep `value` (`text` as JSON) for `ttl` seconds."""
        if self.shared is None:
            self.store.put(key, value, ttl, len(text.encode()))
        elif len(text) <= self.store.max_bytes:
            await self.shared.keep(key[1], _digest(key), text, ttl, _tag_of(key))


def private_owner(auth: AuthConfig | None) -> str | None:
    """Whose `private` entries the current call reads and writes: the authenticated user
    (`security.auth.user_of`: the same person whatever client they use), the stdio
    client (one per gateway) or the web console; None for an anonymous HTTP caller, who
    cannot be told from another."""
    try:
        user = current_user(auth)
    except RuntimeError:  # no request in context
        user = None
    if user is not None:
        return f"user:{user}"
    caller = caller_id(auth)
    return None if caller == ANONYMOUS else f"caller:{caller}"


def request_meta() -> Mapping[str, Any] | None:
    """The current request's `_meta` as the client sent it, in FastMCP's own handling of
    a request (a resource read; a tool call while middleware takes part in calls)."""
    try:
        context = get_context().request_context
    except RuntimeError:  # no request in context
        return None
    return None if context is None else context.meta


def _digest(key: _Key) -> str:
    """A key as the shared store holds it: neither the caller's identity nor the
    arguments show in the store's key names."""
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _tag_of(key: _Key) -> str | None:
    """The tag a shared entry is kept with: its resource's, so that an update of that
    resource forgets its reads alone (`clear`); None for a call."""
    return _tag(key[3]) if key[2] == _READ else None


def _tag(uri: str) -> str:
    """A resource's tag in the shared store (its URI does not show there either)."""
    return hashlib.sha256(uri.encode()).hexdigest()


def _canonical(arguments: Mapping[str, Any]) -> str:
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _keepable(wire: dict[str, Any], rule: CacheRule) -> float | None:
    """Seconds `wire` may be kept under `rule`, or None (see the module docstring)."""
    if wire.get("isError") or wire.get("resultType", "complete") != "complete":
        return None
    ttl = rule.ttl
    hinted = wire.get("ttlMs")
    if isinstance(hinted, int) and not isinstance(hinted, bool) and hinted >= 0:
        ttl = min(ttl, hinted / 1000)
    if wire.get("cacheScope") == "private" and rule.scope == "public":
        return None
    return ttl if ttl > 0 else None
