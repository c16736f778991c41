"""Tests for mcp_agg.resilience.group: one call's attempts (first attempt, retries, the safety rule,
attempts cap, failover), over in-process replicas whose `send` the test plays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp_types
import pytest
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.upstream import Upstream
from mcp_agg.config import RetryConfig
from mcp_agg.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamRequestError,
    UpstreamSessionExpired,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcp_agg.resilience.breaker import BreakerState, CircuitBreaker
from mcp_agg.resilience.group import ReplicaGroup
from mcp_agg.resilience.retry import IDEMPOTENCY_KEY
from tests.fakes import connected, upstreams

#: No waiting between attempts, and a floor that always allows a retry.
FAST = RetryConfig(attempts=3, base_delay=0, max_delay=0, budget_min_per_second=100)


def group(replicas: int = 3, *, retry: RetryConfig = FAST, name: str = "s") -> ReplicaGroup:
    # Each with a session, as far as picking goes.
    members = [connected(r, session=True) for r in upstreams(name, replicas=replicas)]
    return ReplicaGroup(name, members, prefix=name, timeout=5, retry=retry)


class Script:
    """A `send` that answers by replica id: an exception to raise, or a result."""

    def __init__(self, plan: dict[str, Any] | Callable[[int], Any]) -> None:
        self.plan = plan
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, replica: Upstream, meta: dict[str, Any]) -> Any:
        self.sent.append((replica.id, dict(meta)))
        outcome = (
            self.plan(len(self.sent)) if callable(self.plan) else self.plan.get(replica.id, "ok")
        )
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def dispatch(target: ReplicaGroup, script: Script, *, safe: bool) -> Any:
    return await target._dispatch("tool 't'", script, safe=safe)


async def test_a_first_attempt_that_succeeds_is_the_only_one() -> None:
    target = group()
    script = Script({})
    assert await dispatch(target, script, safe=False) == "ok"
    assert len(script.sent) == 1
    assert target.retries == 0


async def test_not_sent_is_retried_on_another_replica_with_the_same_key() -> None:
    target = group()
    script = Script(lambda n: UpstreamConnectError("refused") if n == 1 else {"n": n})
    assert await dispatch(target, script, safe=False) == {"n": 2}  # unsafe: nothing ran
    (first, _), (second, _) = (s for s in script.sent)
    assert first != second  # another replica
    keys = {meta[IDEMPOTENCY_KEY] for _, meta in script.sent}
    assert len(keys) == 1
    assert target.retries == 1


async def test_broken_is_retried_only_when_safe() -> None:
    broken = UpstreamRequestError("connection lost after sending")
    unsafe = Script(lambda n: broken if n == 1 else "ok")
    with pytest.raises(UpstreamError, match="connection lost"):
        await dispatch(group(), unsafe, safe=False)
    assert len(unsafe.sent) == 1  # it may have run: never twice
    safe = Script(lambda n: broken if n == 1 else "ok")
    assert await dispatch(group(), safe, safe=True) == "ok"
    assert len(safe.sent) == 2


async def test_attempts_cap_every_try() -> None:
    target = group(replicas=5)
    script = Script(lambda n: UpstreamUnavailable(f"down {n}"))
    with pytest.raises(UpstreamError, match="down 3"):
        await dispatch(target, script, safe=True)
    assert len(script.sent) == 3  # attempts = 3, though 5 replicas were there
    assert target.retries == 2


async def test_a_backend_protocol_error_is_final_and_relayed_as_it_is() -> None:
    error = MCPError(mcp_types.INVALID_PARAMS, "bad arguments")
    script = Script(lambda n: error)
    with pytest.raises(MCPError) as raised:
        await dispatch(group(), script, safe=True)
    assert raised.value is error
    assert len(script.sent) == 1


async def test_no_retry_once_the_budget_is_spent() -> None:
    stingy = RetryConfig(attempts=3, base_delay=0, budget_percent=0, budget_min_per_second=0)
    target = group(retry=stingy)
    script = Script(lambda n: UpstreamConnectError("refused"))
    with pytest.raises(UpstreamError):
        await dispatch(target, script, safe=True)
    assert len(script.sent) == 1
    assert target.budget.refused == 1


async def test_a_result_of_none_is_returned_after_a_retry() -> None:
    # subscribe's send answers None: a retried call must return it, not loop or fail.
    script = Script(lambda n: UpstreamConnectError("refused") if n == 1 else None)
    assert await dispatch(group(), script, safe=True) is None
    assert len(script.sent) == 2


async def test_failover_after_every_replica_failed() -> None:
    primary, standby = group(replicas=2, name="p"), group(replicas=1, name="b")
    primary.failovers.append(standby)
    script = Script({"p-1": UpstreamConnectError("x"), "p-2": UpstreamConnectError("y")})
    assert await dispatch(primary, script, safe=False) == "ok"
    assert [replica for replica, _ in script.sent] == ["p-1", "p-2", "b-1"] or [
        replica for replica, _ in script.sent
    ] == ["p-2", "p-1", "b-1"]


async def test_a_call_refused_for_its_session_is_sent_again_and_not_held_against_anyone() -> None:
    target = group(replicas=1)
    replica = target.replicas[0]
    replica.breaker = CircuitBreaker(failure_threshold=1)
    expired = UpstreamSessionExpired("the backend no longer knows the session", replica="s-1")
    script = Script(lambda n: expired if n == 1 else "ok")
    assert await dispatch(target, script, safe=False) == "ok"  # unsafe: it never ran
    assert [replica for replica, _ in script.sent] == ["s-1", "s-1"]
    assert replica.breaker.state is BreakerState.CLOSED


async def test_a_call_refused_for_its_session_may_fail_over() -> None:
    primary, standby = group(replicas=1, name="p"), group(replicas=1, name="b")
    primary.failovers.append(standby)
    script = Script({"p-1": UpstreamSessionExpired("gone", replica="p-1")})
    assert await dispatch(primary, script, safe=False) == "ok"
    assert script.sent[-1][0] == "b-1"


class Hung:
    """A `send` that never answers, and says whether it was cancelled."""

    def __init__(self) -> None:
        self.cancelled = False

    async def __call__(self, replica: Upstream, meta: dict[str, Any]) -> Any:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise


def deadline(target: ReplicaGroup, hung: Hung) -> list[Callable[[], Any]]:
    """A call through each way into the group, each ending in `hung`."""

    async def call_on() -> Any:
        target.replicas[0].call_tool = lambda *_, **__: hung(target.replicas[0], {})  # type: ignore[method-assign]
        return await target.call_tool_on(target.replicas[0], "t", {})

    return [lambda: target._dispatch("tool 't'", hung, safe=False), call_on]


@pytest.mark.parametrize("way", [0, 1], ids=["balanced", "on one replica"])
async def test_request_timeout_cancels_the_backend_request_and_names_itself(way: int) -> None:
    target = group(1)
    target.timeout = 0.05
    hung = Hung()
    with (
        anyio.fail_after(5),
        pytest.raises(UpstreamTimeout, match=r"within request_timeout \(0.05s\)"),
    ):
        await deadline(target, hung)[way]()
    assert hung.cancelled
    assert target.replicas[0].breaker.state is BreakerState.CLOSED  # no verdict on the replica


@pytest.mark.parametrize("way", [0, 1], ids=["balanced", "on one replica"])
async def test_the_callers_own_cancellation_is_not_a_timeout(way: int) -> None:
    target = group(1)
    hung = Hung()
    with anyio.move_on_after(0.05) as outer:  # the caller gives up first (its deadline)
        await deadline(target, hung)[way]()
    assert outer.cancelled_caught  # cancelled, not turned into an UpstreamTimeout
    assert hung.cancelled
