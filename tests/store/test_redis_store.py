"""Tests for the Redis store (mcp_agg.store.redis) against a real redis-server: the
Lua token bucket, revocations, registrations watched across two stores (two replicas),
a Redis that stops answering, and a password that never shows."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import mcp_types
import pytest
from redis.asyncio import Redis

from mcp_agg.config import StoreConfig, config_from_raw
from mcp_agg.core.cache import Caching
from mcp_agg.errors import StoreUnavailable
from mcp_agg.store import Registration
from mcp_agg.store.redis import RedisStore, store_address
from tests.e2e.fleet import RedisServer, redis_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def store(redis: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore(StoreConfig(url=redis.url, timeout=0.5))
    yield store
    await store.aclose()


async def raw(redis: RedisServer) -> Redis:
    return Redis.from_url(redis.url, decode_responses=True)


async def test_a_bucket_gives_its_burst_then_the_wait_then_refills(store: RedisStore) -> None:
    waits = [await store.take_token("alice|", 4, 3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.2 < waits[3] <= 0.25  # one token at 4/s, less the little time that passed
    await anyio.sleep(waits[3] + 0.01)
    assert await store.take_token("alice|", 4, 3) == 0.0
    assert await store.take_token("alice|", 4, 3) > 0.0


async def test_buckets_are_independent_and_expire_once_full_again(
    store: RedisStore, redis: RedisServer
) -> None:
    for _ in range(2):
        await store.take_token("bob|", 10, 2)
    assert await store.take_token("bob|", 10, 2) > 0.0
    assert await store.take_token("bob|search_*", 10, 2) == 0.0
    assert await store.take_token("carol|", 10, 2) == 0.0
    client = await raw(redis)
    try:
        ttl = await client.pttl("mcp-agg:bucket:bob|")
        # Empty at 10/s: full again in 0.2 s, plus the 1 s margin.
        assert 1000 < ttl <= 1200
        assert set(await client.hkeys("mcp-agg:bucket:bob|")) == {"tokens", "updated"}
    finally:
        await client.aclose()


async def test_two_stores_share_one_bucket(store: RedisStore, redis: RedisServer) -> None:
    other = RedisStore(StoreConfig(url=redis.url))
    try:
        taken = [await s.take_token("dave|", 0.5, 4) for s in (store, other) * 3]
        assert taken.count(0.0) == 4  # the burst for both, not for each
    finally:
        await other.aclose()


async def test_a_revocation_lasts_its_ttl(store: RedisStore, redis: RedisServer) -> None:
    await store.revoke("session-a", 0.3)
    assert await store.is_revoked("session-a")
    assert not await store.is_revoked("session-b")
    await anyio.sleep(0.35)
    assert not await store.is_revoked("session-a")
    await store.revoke("session-c", float("inf"))
    client = await raw(redis)
    try:
        assert await client.ttl("mcp-agg:revoked:session-c") == -1  # no expiry
    finally:
        await client.aclose()


async def test_of_replicas_revoking_one_key_at_once_one_is_first(
    store: RedisStore, redis: RedisServer
) -> None:
    others = [RedisStore(StoreConfig(url=redis.url)) for _ in range(3)]
    try:
        firsts: list[bool] = []

        async def revoke(target: RedisStore) -> None:
            firsts.append(await target.revoke("signin-state:n1", 60))

        async with anyio.create_task_group() as group:
            for target in (store, *others):
                group.start_soon(revoke, target)
        assert sorted(firsts) == [False, False, False, True]
    finally:
        for other in others:
            await other.aclose()


async def test_a_secret_is_kept_for_every_store_until_deleted(
    store: RedisStore, redis: RedisServer
) -> None:
    other = RedisStore(StoreConfig(url=redis.url))
    value = bytes(range(256))  # any bytes, not only text
    try:
        assert await store.get_secret("k") is None
        await store.put_secret("k", value)
        assert await other.get_secret("k") == value
        client = await raw(redis)
        try:
            assert await client.ttl("mcp-agg:secret:k") == -1  # no expiry
        finally:
            await client.aclose()
        await other.delete_secret("k")
        assert await store.get_secret("k") is None
        await store.delete_secret("k")  # nothing there: no error
    finally:
        await other.aclose()


async def test_registrations_reach_a_watcher_of_another_store(
    store: RedisStore, redis: RedisServer
) -> None:
    other = RedisStore(StoreConfig(url=redis.url))
    entry = json.dumps({"name": "svc", "command": "python"})
    await store.put_registration("before", entry)
    heard: list[Registration] = []
    try:
        with anyio.fail_after(5):
            watch = other.watch_registrations()
            # A watcher starts with what is there already.
            assert await anext(watch) == Registration("before", entry)
            await store.put_registration("svc", entry)
            assert await anext(watch) == Registration("svc", entry)
            await store.put_registration("svc", None)
            heard.append(await anext(watch))
            await watch.aclose()
        assert heard == [Registration("svc", None)]
        assert await other.registrations() == {"before": entry}
    finally:
        await store.put_registration("before", None)
        await other.aclose()


async def test_a_watcher_resubscribes_and_catches_up_after_redis_restarts() -> None:
    with redis_server() as first:
        store = RedisStore(StoreConfig(url=first.url))
        await store.put_registration("kept", "{}")
        await store.put_registration("dropped", "{}")
        watch = store.watch_registrations()
        with anyio.fail_after(5):
            assert {await anext(watch), await anext(watch)} == {
                Registration("kept", "{}"),
                Registration("dropped", "{}"),
            }
        port = first.port
    # The same port, a Redis that lost everything, then a change made elsewhere.
    with redis_server(port) as second:
        writer = RedisStore(StoreConfig(url=second.url))
        await writer.put_registration("kept", "{}")
        await writer.put_registration("new", '{"n": 1}')
        try:
            with anyio.fail_after(10):
                changes = {await anext(watch), await anext(watch)}
            assert changes == {Registration("dropped", None), Registration("new", '{"n": 1}')}
        finally:
            await watch.aclose()
            await writer.aclose()
            await store.aclose()


async def test_a_redis_that_stops_answering_fails_within_the_timeout() -> None:
    with redis_server() as server:
        store = RedisStore(StoreConfig(url=server.url, timeout=0.3))
        try:
            assert await store.take_token("eve|", 1, 1) == 0.0  # connected
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                for call in (
                    lambda: store.take_token("eve|", 1, 1),
                    lambda: store.is_revoked("x"),
                    lambda: store.put_registration("x", "{}"),
                ):
                    began = time.monotonic()
                    silent = r"unreachable: .* got no answer within 0.3 s"
                    with pytest.raises(StoreUnavailable, match=silent):
                        await call()
                    assert time.monotonic() - began < 1.0
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
        finally:
            await store.aclose()


async def test_nothing_listening_is_store_unavailable_naming_the_store() -> None:
    with redis_server() as server:
        url = server.url
    store = RedisStore(StoreConfig(url=url, timeout=0.5))
    try:
        refused = rf"^store {url} unreachable: a revocation failed"
        with pytest.raises(StoreUnavailable, match=refused):
            await store.revoke("x", 1)
    finally:
        await store.aclose()


async def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    password = "s3cret-redis-password-42"
    with redis_server(password=password) as server:
        assert password in server.url
        good = RedisStore(StoreConfig(url=server.url))
        wrong = RedisStore(StoreConfig(url=server.url.replace(password, "not-it")))
        try:
            assert good.address == f"redis://127.0.0.1:{server.port}/0"
            assert await good.take_token("frank|", 1, 1) == 0.0
            with pytest.raises(StoreUnavailable) as caught:
                await wrong.take_token("frank|", 1, 1)
            assert "not-it" not in str(caught.value)
            assert str(caught.value).startswith(
                f"store redis://127.0.0.1:{server.port}/0 unreachable: "
            )
        finally:
            await good.aclose()
            await wrong.aclose()
    assert password not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@cache:6380/2", "redis://cache:6380/2"),
        ("rediss://user:pw@cache.example.com/0", "rediss://cache.example.com:6379/0"),
        ("redis://127.0.0.1", "redis://127.0.0.1:6379"),
    ],
)
def test_the_address_shown_has_no_password(url: str, shown: str) -> None:
    assert store_address(url) == shown


async def test_cached_responses_are_shared_and_cleared_for_every_store(
    store: RedisStore, redis: RedisServer
) -> None:
    other = RedisStore(StoreConfig(url=redis.url))
    try:
        assert await store.cached("srv", "k") is None
        await store.keep("srv", "k", '{"a": 1}', 30)
        await store.keep("other", "k", "kept", 30)
        assert await other.cached("srv", "k") == '{"a": 1}'
        client = await raw(redis)
        try:
            ttl = await client.pttl("mcp-agg:cache:srv:0:k")
            assert 0 < ttl <= 30_000
        finally:
            await client.aclose()
        await other.clear("srv")
        assert await store.cached("srv", "k") is None
        assert await store.cached("other", "k") == "kept"
        await store.keep("srv", "k", "new", 0.05)
        assert await other.cached("srv", "k") == "new"
        await anyio.sleep(0.1)
        assert await other.cached("srv", "k") is None
    finally:
        await other.aclose()


async def test_a_tags_responses_are_cleared_alone_for_every_store(
    store: RedisStore, redis: RedisServer
) -> None:
    """A resource's update (a tag) forgets its responses on every replica, and only
    them; the tag's generation lapses with the longest-lived response kept with it."""
    other = RedisStore(StoreConfig(url=redis.url))
    client = await raw(redis)
    try:
        await store.keep("tagged", "read-1", "1", 30, tag="uri-1")
        await store.keep("tagged", "read-1b", "1b", 60, tag="uri-1")
        await store.keep("tagged", "read-2", "2", 30, tag="uri-2")
        await store.keep("tagged", "call", "3", 30)
        assert await other.cached("tagged", "read-1", "uri-1") == "1"
        assert 30_000 < await client.pttl("mcp-agg:cache:tagged:0:tag:uri-1") <= 60_000

        await other.clear("tagged", "uri-1")
        kept = [
            await store.cached("tagged", key, tag)
            for key, tag in [("read-1", "uri-1"), ("read-1b", "uri-1"), ("read-2", "uri-2")]
        ]
        assert kept == [None, None, "2"]
        assert await store.cached("tagged", "call") == "3"
        await store.keep("tagged", "read-1", "new", 30, tag="uri-1")
        assert await other.cached("tagged", "read-1", "uri-1") == "new"

        await other.clear("tagged", "never-kept")  # no generation made for nothing
        assert not await client.exists("mcp-agg:cache:tagged:0:tag:never-kept")
        await other.clear("tagged")  # the whole space: tagged responses too
        assert await store.cached("tagged", "read-1", "uri-1") is None
        assert await store.cached("tagged", "read-2", "uri-2") is None
    finally:
        await client.aclose()
        await other.aclose()


async def test_replicas_caches_forget_one_resource_through_redis(redis: RedisServer) -> None:
    """Two replicas' caches on one Redis: a resource update one of them hears forgets
    that resource's reads for both, and nothing else."""
    raw_config = {
        "gateway": {"store": {"url": redis.url}},
        "servers": [{"name": "fleet", "command": "x", "cache": {"tools": ["*"], "ttl": 30}}],
    }
    config = config_from_raw(raw_config, None, {})
    stores = [RedisStore(StoreConfig(url=redis.url)) for _ in range(2)]
    first, second = (Caching(config, shared) for shared in stores)
    try:
        counts: dict[str, int] = {}

        async def read(cache: Caching, uri: str) -> str:
            async def fetch() -> mcp_types.ReadResourceResult:
                counts[uri] = counts.get(uri, 0) + 1
                text = mcp_types.TextResourceContents(uri=uri, text=str(counts[uri]))
                return mcp_types.ReadResourceResult(
                    contents=[text], ttl_ms=30_000, cache_scope="public"
                )

            result = await cache.read("fleet", uri, fetch)
            return str(result.contents[0].text)  # type: ignore[union-attr]

        assert [await read(first, "file:///a"), await read(first, "file:///b")] == ["1", "1"]
        await second.clear("fleet", "file:///a")  # resources/updated, heard by the second
        assert [await read(first, "file:///a"), await read(first, "file:///b")] == ["2", "1"]
        await first.clear("fleet")  # list_changed, heard by the first
        assert [await read(second, "file:///a"), await read(second, "file:///b")] == ["3", "2"]
    finally:
        for shared in stores:
            await shared.aclose()
