"""Tests for the gateway's own limits: token buckets, per-tool overrides, idle eviction,
size limits, the refusal result and the bulkhead (mcp_agg.security.ratelimit, .limits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from mcp_agg.config import GatewayConfig, RateConfig, RateLimitConfig, config_from_raw
from mcp_agg.errors import BulkheadFull, ConfigError, RateLimited, TooLarge
from mcp_agg.security.auth import ANONYMOUS, CONSOLE, caller_id, console_call
from mcp_agg.security.limits import (
    RETRY_AFTER_META,
    Bulkhead,
    CallLimits,
    check_size,
    json_size,
)
from mcp_agg.security.ratelimit import RateLimiter, TokenBucket
from mcp_agg.store import MemoryStore
from tests.fakes import FakeClock


def limiter(
    rps: float = 2.0,
    burst: int = 3,
    tools: dict[str, RateConfig] | None = None,
    **kwargs: Any,
) -> tuple[RateLimiter, FakeClock]:
    """A limiter on an in-process store (`MemoryStore`) and the clock it reads."""
    clock = FakeClock()
    config = RateLimitConfig(requests_per_second=rps, burst=burst, tools=tools or {})
    return RateLimiter(config, MemoryStore(clock=clock, **kwargs)), clock


async def refused(rate: RateLimiter, identity: str, tool: str) -> RateLimited | None:
    try:
        await rate.check(identity, tool)
    except RateLimited as exc:
        return exc
    return None


def buckets(rate: RateLimiter) -> int:
    """Buckets the limiter's in-process store keeps."""
    assert isinstance(rate.store, MemoryStore)
    return len(rate.store)


# ---------------------------------------------------------------------------- buckets


def test_bucket_allows_the_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket.full(RateConfig(requests_per_second=4, burst=2), now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.25)
    # Half the wait later, half a token is there: the rest of the wait remains.
    assert bucket.take(0.125) == pytest.approx(0.125)
    assert bucket.take(0.25) == 0.0


def test_bucket_refills_up_to_the_burst_only() -> None:
    bucket = TokenBucket.full(RateConfig(requests_per_second=10, burst=2), now=0.0)
    assert bucket.take(0.0) == bucket.take(0.0) == 0.0
    # An hour idle refills to the burst, not to 36000 tokens.
    assert bucket.take(3600.0) == 0.0
    assert bucket.take(3600.0) == 0.0
    assert bucket.take(3600.0) > 0.0


def test_a_clock_that_does_not_move_never_adds_tokens() -> None:
    bucket = TokenBucket.full(RateConfig(requests_per_second=1, burst=1), now=5.0)
    assert bucket.take(5.0) == 0.0
    assert bucket.take(4.0) == pytest.approx(1.0)  # an earlier reading changes nothing


async def test_limiter_refuses_after_the_burst_and_recovers_after_the_refill() -> None:
    rate, clock = limiter(rps=2, burst=3)
    for _ in range(3):
        assert await refused(rate, "alice", "svc_read") is None
    exc = await refused(rate, "alice", "svc_read")
    assert exc is not None
    assert exc.retry_after == pytest.approx(0.5)
    assert str(exc) == "rate limit for client 'alice' exceeded: retry in 0.50 s"
    # A refused call takes no token: the wait does not grow with refusals.
    assert (again := await refused(rate, "alice", "svc_read")) is not None
    assert again.retry_after == pytest.approx(0.5)
    clock.advance(0.49)
    assert await refused(rate, "alice", "svc_read") is not None
    clock.advance(0.01)
    assert await refused(rate, "alice", "svc_read") is None
    assert await refused(rate, "alice", "svc_read") is not None


async def test_retry_after_is_rounded_up_so_a_retry_then_is_admitted() -> None:
    rate, clock = limiter(rps=3, burst=1)
    await rate.check("alice", "t")
    exc = await refused(rate, "alice", "t")
    assert exc is not None
    assert exc.retry_after == 0.34  # 1/3 s, rounded up to the hundredth
    clock.advance(exc.retry_after)
    assert await refused(rate, "alice", "t") is None


async def test_each_identity_has_its_own_bucket() -> None:
    rate, _ = limiter(rps=1, burst=1)
    assert await refused(rate, "alice", "t") is None
    assert await refused(rate, "alice", "t") is not None
    assert await refused(rate, "bob", "t") is None
    assert await refused(rate, ANONYMOUS, "t") is None


# ---------------------------------------------------------------------------- overrides


async def test_the_first_matching_pattern_picks_the_bucket() -> None:
    tools = {
        "search_*": RateConfig(requests_per_second=1, burst=1),
        "search_deep*": RateConfig(requests_per_second=1, burst=5),  # shadowed by the first
        "*_write": RateConfig(requests_per_second=1, burst=2),
    }
    rate, _ = limiter(rps=1, burst=3, tools=tools)
    assert rate.pattern_for("search_web") == "search_*"
    assert rate.pattern_for("search_deep") == "search_*"
    assert rate.pattern_for("notes_write") == "*_write"
    assert rate.pattern_for("notes_read") is None
    assert rate.pattern_for("Search_web") is None  # case-sensitive, like exposed names


async def test_a_tool_override_has_its_own_bucket_per_identity_and_pattern() -> None:
    tools = {"search_*": RateConfig(requests_per_second=1, burst=1)}
    rate, _ = limiter(rps=1, burst=2, tools=tools)
    assert await refused(rate, "alice", "search_web") is None
    exc = await refused(rate, "alice", "search_images")  # same pattern: same bucket
    assert exc is not None
    assert "on tools 'search_*'" in str(exc)
    # The default bucket is untouched by the override's calls ...
    assert await refused(rate, "alice", "notes_read") is None
    assert await refused(rate, "alice", "notes_write") is None
    assert await refused(rate, "alice", "notes_read") is not None
    # ... and bob's buckets by alice's.
    assert await refused(rate, "bob", "search_web") is None


# ---------------------------------------------------------------------------- eviction


async def test_idle_buckets_are_evicted() -> None:
    rate, clock = limiter(rps=10, burst=5)
    for identity in ("a", "b", "c"):
        await rate.check(identity, "t")
    assert buckets(rate) == 3
    clock.advance(0.05)  # half a token back: not full yet, nothing to forget
    await rate.check("d", "t")
    assert buckets(rate) == 4
    clock.advance(1.0)  # all full again: a new bucket's arrival sweeps them
    await rate.check("e", "t")
    assert buckets(rate) == 1


async def test_a_bucket_in_use_is_not_evicted_and_eviction_changes_nothing() -> None:
    rate, clock = limiter(rps=1, burst=2)
    for _ in range(2):
        await rate.check("alice", "t")
    assert await refused(rate, "alice", "t") is not None
    clock.advance(1.5)  # alice has 1.5 tokens: not idle
    await rate.check("bob", "t")
    assert buckets(rate) == 2
    assert await refused(rate, "alice", "t") is None  # her bucket, with its 1.5 tokens
    assert await refused(rate, "alice", "t") is not None


async def test_the_number_of_buckets_is_capped() -> None:
    rate, _ = limiter(rps=1, burst=1, max_entries=100)
    for i in range(1000):
        await rate.check(f"client-{i}", "t")
    assert buckets(rate) == 100


# ---------------------------------------------------------------------------- identity


def test_a_caller_outside_any_http_request_is_stdio() -> None:
    assert caller_id(None) == "stdio"


def test_a_call_from_the_web_console_is_the_consoles() -> None:
    token = console_call.set(True)
    try:
        assert caller_id(None) == CONSOLE
    finally:
        console_call.reset(token)
    assert caller_id(None) == "stdio"


# ---------------------------------------------------------------------------- sizes


def test_json_size_is_compact_utf8() -> None:
    assert json_size({"a": [1, 2], "b": "x"}) == len(b'{"a":[1,2],"b":"x"}')
    assert json_size({"k": "é"}) == len('{"k":"é"}'.encode())


def test_check_size_names_the_size_and_the_limit() -> None:
    check_size({"k": "v"}, 9, "arguments", "max_argument_bytes")
    with pytest.raises(TooLarge) as caught:
        check_size({"k": "vv"}, 9, "arguments", "max_argument_bytes")
    assert str(caught.value) == "arguments of 10 bytes is over max_argument_bytes (9 bytes)"


async def test_call_limits_without_limits_admit_everything_untouched() -> None:
    limits = CallLimits(
        GatewayConfig(), MemoryStore(), identity=lambda: pytest.fail("identity looked up")
    )
    result = {"content": [], "isError": False}
    assert not limits.admits  # the pipeline does not even ask
    assert await limits.admit("t", {"x": "y" * 10_000}) is None
    assert limits.checked("t", result) is result


async def test_call_limits_refuse_as_a_tool_error_with_retry_after() -> None:
    clock = FakeClock()
    config = GatewayConfig(
        rate_limit=RateLimitConfig(requests_per_second=2, burst=1),
        max_argument_bytes=20,
        max_result_bytes=30,
    )
    limits = CallLimits(config, MemoryStore(clock=clock), identity=lambda: "alice")
    assert await limits.admit("svc_read", {"key": "k"}) is None
    refusal = await limits.admit("svc_read", {"key": "k"})
    assert refusal is not None
    assert refusal["isError"] is True
    assert refusal["content"][0]["text"] == (
        "svc_read: rate limit for client 'alice' exceeded: retry in 0.50 s"
    )
    assert refusal["_meta"] == {RETRY_AFTER_META: 0.5}

    clock.advance(1)
    big = await limits.admit("svc_read", {"key": "k" * 20})
    assert big is not None
    assert big["isError"] is True
    assert "_meta" not in big
    text = big["content"][0]["text"]
    assert "arguments of 30 bytes is over max_argument_bytes (20 bytes)" in text

    small = {"content": [], "isError": False}
    assert limits.checked("svc_read", small) is small
    large = {"content": [{"type": "text", "text": "x" * 40}], "isError": False}
    withheld = limits.checked("svc_read", large)
    assert withheld["isError"] is True
    text = withheld["content"][0]["text"]
    assert "result of 95 bytes is over max_result_bytes (30 bytes)" in text


# ---------------------------------------------------------------------------- config


def test_rate_limit_config_reads_overrides_in_order() -> None:
    raw = {
        "gateway": {
            "rate_limit": {
                "requests_per_second": 5,
                "burst": 10,
                "tools": {"b_*": {"requests_per_second": 1, "burst": 1}, "a_*": {}},
            }
        }
    }
    with pytest.raises(ConfigError, match=r"rate_limit\.tools\.a_\*\.burst"):
        config_from_raw(raw, Path("servers.toml"), {})
    raw["gateway"]["rate_limit"]["tools"]["a_*"] = {"requests_per_second": 2, "burst": 3}
    rate = config_from_raw(raw, Path("servers.toml"), {}).gateway.rate_limit
    assert rate is not None
    assert list(rate.tools) == ["b_*", "a_*"]


def test_replicas_must_agree_on_their_bulkhead() -> None:
    server = {"name": "svc", "command": "x"}
    raw = {"servers": [{**server, "max_concurrent": 2}, {**server, "max_concurrent": 3}]}
    with pytest.raises(ConfigError, match="disagree on `max_concurrent`"):
        config_from_raw(raw, Path("servers.toml"), {})


# ---------------------------------------------------------------------------- bulkhead


async def test_bulkhead_refuses_when_full_and_names_the_server() -> None:
    bulkhead = Bulkhead("svc", 1, 0)
    async with bulkhead.slot():
        assert bulkhead.in_use == 1
        with pytest.raises(BulkheadFull) as caught:
            async with bulkhead.slot():
                pytest.fail("a second slot")
    assert bulkhead.in_use == 0
    assert str(caught.value) == (
        "server 'svc' is busy: its max_concurrent (1) calls stayed in flight "
        "for queue_timeout (0 s); call refused"
    )


async def test_bulkhead_queued_call_gets_the_slot_when_it_is_freed() -> None:
    bulkhead = Bulkhead("svc", 1, 30)
    release = anyio.Event()
    order: list[str] = []

    async def holder() -> None:
        async with bulkhead.slot():
            order.append("held")
            await release.wait()
        order.append("released")

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        with anyio.fail_after(5):
            while bulkhead.in_use == 0:
                await anyio.lowlevel.checkpoint()
        tg.start_soon(_set_later, release)
        async with bulkhead.slot():
            order.append("queued")
    assert order == ["held", "released", "queued"]
    assert bulkhead.in_use == 0


async def _set_later(event: anyio.Event) -> None:
    await anyio.lowlevel.checkpoint()
    event.set()
