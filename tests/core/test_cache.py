"""Tests for mcp_agg.core.cache: what may be cached, keys, bounds, TTL, invalidation."""

from __future__ import annotations

import re
from typing import Any
from unittest.mock import patch

import mcp_types
import pytest

from mcp_agg.config import config_from_raw
from mcp_agg.config.cache import CacheLimitsConfig, ServerCacheConfig
from mcp_agg.core import cache as cache_module
from mcp_agg.core.cache import BYPASS_META_KEY, CacheRule, Caching, ResponseCache, tool_rule
from mcp_agg.core.pipeline import ToolCall
from mcp_agg.security.auth import ANONYMOUS
from mcp_agg.store import MemoryStore
from tests.fakes import FakeClock

READ_ONLY = mcp_types.ToolAnnotations(read_only_hint=True)
WRITES = mcp_types.ToolAnnotations(read_only_hint=False)
GETS = ServerCacheConfig(tools=["get_*"], ttl=30)


@pytest.mark.parametrize(
    ("tool", "annotations", "config", "expected"),
    [
        ("get_user", READ_ONLY, GETS, CacheRule(30, "private")),
        ("get_user", READ_ONLY, None, None),  # cache = false: never
        ("get_user", None, GETS, None),  # no annotations: not known to be read-only
        ("get_user", WRITES, GETS, None),  # changes something: never, whatever the patterns
        ("put_user", READ_ONLY, GETS, None),  # not named by the operator
        (
            "get_user",
            None,
            ServerCacheConfig(tools=["get_*"], ttl=5, read_only_tools=["get_user"]),
            CacheRule(5, "private"),  # the operator vouches for it
        ),
        (
            "get_user",
            READ_ONLY,
            ServerCacheConfig(tools=["*"], ttl=1, scope="public"),
            CacheRule(1, "public"),
        ),
    ],
)
def test_which_tools_are_cached(
    tool: str,
    annotations: mcp_types.ToolAnnotations | None,
    config: ServerCacheConfig | None,
    expected: CacheRule | None,
) -> None:
    assert tool_rule(tool, annotations, config) == expected


class Tool:
    """A backend tool whose every answer differs (a counter)."""

    server = "demo"
    original = "get_count"

    def __init__(self, rule: CacheRule | None, **extra: Any) -> None:
        self.name = "demo_get_count"
        self.cache_rule = rule
        self.extra = extra
        self.calls = 0

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        return {"content": [{"type": "text", "text": str(self.calls)}], **self.extra}


def stage(clock: FakeClock | None = None) -> Caching:
    raw = {"servers": [{"name": "demo", "command": "x", "cache": {"tools": ["*"], "ttl": 1}}]}
    return Caching(config_from_raw(raw, None, {}), clock=clock or FakeClock())


async def call(
    cache: Caching, tool: Tool, meta: dict[str, Any] | None = None, **arguments: Any
) -> str:
    async def relay(call: ToolCall) -> dict[str, Any]:
        call.relayed = await call.tool.relay(call.arguments)
        return call.relayed

    wire = await cache(ToolCall(tool, arguments, meta=meta), relay)  # type: ignore[arg-type]
    return str(wire["content"][0]["text"])


PUBLIC = CacheRule(30, "public")


async def test_a_cached_call_is_answered_again_until_its_ttl() -> None:
    clock = FakeClock()
    cache, tool = stage(clock), Tool(PUBLIC)
    assert [await call(cache, tool), await call(cache, tool)] == ["1", "1"]
    clock.advance(29.9)
    assert await call(cache, tool) == "1"
    clock.advance(0.2)
    assert [await call(cache, tool), await call(cache, tool)] == ["2", "2"]
    stats = cache.store.stats
    assert (stats.hits, stats.misses) == (3, 2)


async def test_arguments_are_part_of_the_key_in_any_order() -> None:
    cache, tool = stage(), Tool(PUBLIC)
    assert await call(cache, tool, a=1, b=2) == "1"
    assert await call(cache, tool, b=2, a=1) == "1"  # the same call, canonical JSON
    assert await call(cache, tool, a=2, b=2) == "2"


@pytest.mark.parametrize(
    ("rule", "extra"),
    [
        (None, {}),  # not cacheable
        (PUBLIC, {"isError": True}),
        (PUBLIC, {"resultType": "input_required"}),
        (PUBLIC, {"ttlMs": 0}),  # the backend says: immediately stale
        (PUBLIC, {"cacheScope": "private"}),  # not to be shared
    ],
)
async def test_what_is_never_kept(rule: CacheRule | None, extra: dict[str, Any]) -> None:
    cache, tool = stage(), Tool(rule, **extra)
    assert [await call(cache, tool), await call(cache, tool)] == ["1", "2"]
    assert len(cache.store) == 0


async def test_a_result_hint_shortens_the_ttl() -> None:
    clock = FakeClock()
    cache, tool = stage(clock), Tool(PUBLIC, ttlMs=1000)
    assert [await call(cache, tool), await call(cache, tool)] == ["1", "1"]
    clock.advance(1.0)
    assert await call(cache, tool) == "2"


async def test_the_client_can_ask_for_fresh_data() -> None:
    cache, tool = stage(), Tool(PUBLIC)
    assert await call(cache, tool) == "1"
    assert await call(cache, tool, {"mcp-agg/cache": False}) == "2"
    assert await call(cache, tool) == "2"  # the fresh answer is kept for the next caller
    assert await call(cache, tool, {"mcp-agg/cache": True}) == "2"


_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
#: The 2026-07-28 schema's rules for a `_meta` key (`MetaObject`): an optional prefix of
#: dot-separated labels and a slash, then a name.
_META_KEY = re.compile(
    rf"(?:({_LABEL}(?:\.{_LABEL})*)/)?(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?"
)


def _meta_key_ours(key: str) -> bool:
    """Whether `key` is a valid `_meta` key outside the prefixes reserved for MCP (those
    whose second label is `modelcontextprotocol` or `mcp`)."""
    match = _META_KEY.fullmatch(key)
    if match is None or match.group(1) is None:
        return False
    labels = match.group(1).split(".")
    return len(labels) < 2 or labels[1] not in ("modelcontextprotocol", "mcp")


@pytest.mark.parametrize(
    ("key", "ours"),
    [
        (BYPASS_META_KEY, True),
        ("com.example.mcp/cache", True),
        ("io.modelcontextprotocol/cache", False),  # reserved
        ("dev.mcp/cache", False),  # reserved
        ("cache", False),  # no prefix: not namespaced
        ("mcp_agg/cache", False),  # "_" is not allowed in a label
        ("mcp-agg/-cache", False),  # a name starts with a letter or digit
    ],
)
def test_the_bypass_key_follows_the_specs_meta_naming(key: str, ours: bool) -> None:
    assert _meta_key_ours(key) is ours


async def test_private_entries_are_each_callers_own(monkeypatch: pytest.MonkeyPatch) -> None:
    user: list[str | None] = ["alice"]
    monkeypatch.setattr(cache_module, "current_user", lambda auth: user[0])
    cache, tool = stage(), Tool(CacheRule(30, "private"))
    assert [await call(cache, tool), await call(cache, tool)] == ["1", "1"]
    user[0] = "bob"
    assert [await call(cache, tool), await call(cache, tool)] == ["2", "2"]
    user[0] = "alice"
    assert await call(cache, tool) == "1"
    # Shared entries are one for everyone.
    public = Tool(PUBLIC)
    assert await call(cache, public) == "1"
    user[0] = "bob"
    assert await call(cache, public) == "1"


async def test_anonymous_callers_get_no_private_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "caller_id", lambda auth: ANONYMOUS)
    cache, tool = stage(), Tool(CacheRule(30, "private"))
    assert [await call(cache, tool), await call(cache, tool)] == ["1", "2"]


async def test_the_stdio_client_has_private_entries() -> None:
    cache, tool = stage(), Tool(CacheRule(30, "private"))  # no request: the stdio client
    assert [await call(cache, tool), await call(cache, tool)] == ["1", "1"]


async def test_a_server_change_forgets_its_entries() -> None:
    cache, tool = stage(), Tool(PUBLIC)
    assert await call(cache, tool) == "1"
    cache.forget("other")
    assert await call(cache, tool) == "1"
    cache.forget("demo", "file:///x")  # a resource's update: only reads of that URI
    assert await call(cache, tool) == "1"
    cache.forget("demo")
    assert await call(cache, tool) == "2"


def entry(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}]}


def key(n: int) -> tuple[str, str, str, str, str]:
    return ("", "demo", "tools/call", "get", str(n))


def put(cache: ResponseCache, n: int, text: str) -> None:
    cache.put(key(n), entry(text), 30, len(text) + 40)


def test_bounded_by_entries_least_recently_used_first() -> None:
    cache = ResponseCache(CacheLimitsConfig(max_entries=2), FakeClock())
    put(cache, 1, "a")
    put(cache, 2, "b")
    assert cache.get(key(1)) is not None  # 2 is now the least recently used
    put(cache, 3, "c")
    assert [cache.get(key(n)) is not None for n in (1, 2, 3)] == [True, False, True]
    assert cache.stats.evictions == 1


def test_bounded_by_bytes() -> None:
    cache = ResponseCache(CacheLimitsConfig(max_bytes=1024), FakeClock())
    for n in range(3):
        put(cache, n, "x" * 400)
    assert len(cache) == 2
    assert cache.size == 2 * 440
    assert cache.get(key(0)) is None
    put(cache, 9, "x" * 2000)  # larger than the whole cache: not kept
    assert cache.get(key(9)) is None
    assert len(cache) == 2


class Resource:
    """A backend resource whose every read differs, with the cache hints it is given."""

    def __init__(self, **hints: Any) -> None:
        self.hints = hints
        self.reads = 0

    async def fetch(self) -> mcp_types.ReadResourceResult:
        self.reads += 1
        contents = [mcp_types.TextResourceContents(uri="file:///r", text=str(self.reads))]
        return mcp_types.ReadResourceResult(contents=contents, **self.hints)


async def read(cache: Caching, resource: Resource, meta: dict[str, Any] | None = None) -> str:
    """A read whose request carried `meta` (what FastMCP's context would hold)."""
    with patch.object(cache_module, "request_meta", lambda: meta):
        result = await cache.read("demo", "file:///r", resource.fetch)
    return str(result.contents[0].text)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("hints", "kept"),
    [
        ({}, False),  # no hints (the handshake era): immediately stale
        ({"ttl_ms": 0, "cache_scope": "public"}, False),
        ({"ttl_ms": 5000, "cache_scope": "public"}, True),
        ({"ttl_ms": 5000, "cache_scope": "private"}, True),  # the stdio client's own
        ({"ttl_ms": 5000}, True),
    ],
)
async def test_a_read_is_kept_as_its_hints_allow(hints: dict[str, Any], kept: bool) -> None:
    cache, resource = stage(), Resource(**hints)
    assert [await read(cache, resource), await read(cache, resource)] == (
        ["1", "1"] if kept else ["1", "2"]
    )


async def test_a_read_until_its_ttl_bypass_and_update() -> None:
    clock = FakeClock()
    cache, resource = stage(clock), Resource(ttl_ms=2000, cache_scope="public")
    assert await read(cache, resource) == "1"
    clock.advance(1.9)
    assert await read(cache, resource) == "1"
    clock.advance(0.1)
    assert await read(cache, resource) == "2"
    assert await read(cache, resource, {"mcp-agg/cache": False}) == "3"
    assert await read(cache, resource) == "3"
    cache.forget("demo", "file:///other")
    assert await read(cache, resource) == "3"
    cache.forget("demo", "file:///r")  # resources/updated
    assert await read(cache, resource) == "4"


async def test_a_private_read_is_its_users_own(monkeypatch: pytest.MonkeyPatch) -> None:
    user: list[str | None] = ["alice"]
    monkeypatch.setattr(cache_module, "current_user", lambda auth: user[0])
    cache, resource = stage(), Resource(ttl_ms=5000, cache_scope="private")
    assert [await read(cache, resource), await read(cache, resource)] == ["1", "1"]
    user[0] = "bob"
    assert [await read(cache, resource), await read(cache, resource)] == ["2", "2"]


async def test_replicas_of_a_fleet_share_entries_through_the_store() -> None:
    """With `[gateway.store]`, an entry one replica kept answers the other, and a clear
    by either forgets it for both."""
    raw = {
        "gateway": {"store": {"url": "redis://127.0.0.1:1/0"}},
        "servers": [{"name": "demo", "command": "x", "cache": {"tools": ["*"], "ttl": 30}}],
    }
    config, shared, clock = config_from_raw(raw, None, {}), MemoryStore(), FakeClock()
    first, second = Caching(config, shared, clock), Caching(config, shared, clock)
    tool, resource = Tool(PUBLIC), Resource(ttl_ms=5000, cache_scope="public")
    assert [await call(first, tool), await call(second, tool)] == ["1", "1"]
    assert [await read(first, resource), await read(second, resource)] == ["1", "1"]
    assert len(first.store) == 0  # nothing in process
    await second.clear("demo")
    assert [await call(first, tool), await read(first, resource)] == ["2", "2"]
    assert (second.store.stats.hits, first.store.stats.misses) == (2, 4)
