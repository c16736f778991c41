"""Tests for mcp_agg.resilience.picking: who may take an attempt, waiting for a replica
that reconnects, and the reasons given when nobody can."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest

from mcp_agg.backend.upstream import ReplicaState, Upstream
from mcp_agg.resilience.balancer import RoundRobin
from mcp_agg.resilience.picking import await_replica, nobody_available, pick, unavailable
from tests.fakes import FakeBackend, connected, upstreams


def replicas(count: int = 3) -> list[Upstream]:
    return [connected(r, session=True) for r in upstreams("s", replicas=count)]


@pytest.mark.parametrize(
    ("setup", "tried", "expected"),
    [
        pytest.param(lambda rs: None, set(), {"s-1", "s-2", "s-3"}, id="all-candidates"),
        pytest.param(lambda rs: None, {"s-1", "s-2"}, {"s-3"}, id="untried-only"),
        pytest.param(
            lambda rs: setattr(rs[0], "state", ReplicaState.ERROR), {"s-2"}, {"s-3"}, id="down"
        ),
        pytest.param(
            lambda rs: (
                rs[2].health.record(ok=False)
                or rs[2].health.record(ok=False)
                or rs[2].health.record(ok=False)
            ),
            {"s-1"},
            {"s-2"},
            id="unhealthy",
        ),
        pytest.param(
            lambda rs: setattr(rs[1], "drained", True), set(), {"s-1", "s-3"}, id="drained"
        ),
    ],
)
def test_pick_takes_only_admitted_untried_replicas(
    setup: object, tried: set[str], expected: set[str]
) -> None:
    members = replicas()
    setup(members)  # type: ignore[operator]
    balancer = RoundRobin()
    picked = {pick(members, balancer, tried).id for _ in range(6)}  # type: ignore[union-attr]
    assert picked == expected


def test_pick_skips_a_replica_whose_circuit_is_open() -> None:
    members = replicas(2)
    breaker = members[0].breaker
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    assert not breaker.allows()
    balancer = RoundRobin()
    assert {pick(members, balancer, set()).id for _ in range(4)} == {"s-2"}  # type: ignore[union-attr]


def test_reasons_say_a_replica_is_drained() -> None:
    members = replicas(1)
    members[0].drained = True
    assert pick(members, RoundRobin(), set()) is None
    assert nobody_available("s", members, set(), None) == (
        "no replica of 's' could take it (s-1 connected (drained))"
    )
    assert unavailable(members[0]) == "backend s-1 is not available (connected, drained)"


def test_pick_with_no_candidate_is_none() -> None:
    members = replicas(2)
    assert pick(members, RoundRobin(), {"s-1", "s-2"}) is None


async def test_await_replica_waits_for_a_reconnecting_replica() -> None:
    members = replicas(1)
    members[0].state = ReplicaState.CONNECTING

    async def reconnect() -> None:
        await anyio.sleep(0.1)
        members[0].state = ReplicaState.CONNECTED

    async with anyio.create_task_group() as tg:
        tg.start_soon(reconnect)
        replica = await await_replica(members, RoundRobin(), anyio.current_time() + 5)
    assert replica is members[0]


async def test_await_replica_gives_up_when_nobody_is_reconnecting() -> None:
    members = replicas(1)
    members[0].state = ReplicaState.ERROR
    with anyio.fail_after(1):
        assert await await_replica(members, RoundRobin(), anyio.current_time() + 5) is None


async def test_await_replica_never_waits_past_the_deadline() -> None:
    members = replicas(1)
    members[0].state = ReplicaState.CONNECTING
    began = anyio.current_time()
    assert await await_replica(members, RoundRobin(), began + 0.1) is None
    assert anyio.current_time() - began < 1


def test_reasons_name_each_replica_and_the_last_error() -> None:
    members = replicas(2)
    members[1].state = ReplicaState.ERROR
    members[1].stats.last_error = "connection refused"
    said = nobody_available("s", members, {"s-1"}, RuntimeError("boom"))
    assert said == "no replica of 's' could take it (s-1 tried, s-2 error); last error: boom"
    assert unavailable(members[1]) == (
        "backend s-2 is not available (error); last error: connection refused"
    )


@contextlib.asynccontextmanager
async def backing_off(backend: FakeBackend) -> AsyncIterator[Upstream]:
    """A supervised replica once its first attempt to connect to `backend` has failed: in
    its reconnect backoff then, of at least half a second."""
    replica = backend.serve(upstreams("s")[0])
    async with anyio.create_task_group() as tg:
        tg.start_soon(replica.run)
        with anyio.fail_after(5):
            while not (backend.attempts and replica.state is ReplicaState.ERROR):
                await anyio.sleep(0.01)
        yield replica
        await replica.stop()


async def test_await_replica_has_a_replica_in_backoff_reconnect_now() -> None:
    backend = FakeBackend(up=False)
    async with backing_off(backend) as replica:
        backend.up = True  # back long before the backoff ends
        with anyio.fail_after(0.4):
            found = await await_replica([replica], RoundRobin(), anyio.current_time() + 5)
        assert found is replica
        assert backend.attempts == 2


async def test_await_replica_gives_up_once_the_early_attempt_failed() -> None:
    backend = FakeBackend(up=False)
    async with backing_off(backend) as replica:
        deadline = anyio.current_time() + 5
        with anyio.fail_after(0.4):
            assert await await_replica([replica], RoundRobin(), deadline) is None
            assert backend.attempts == 2
            # The backend was down a moment ago: the next call does not try it again.
            assert await await_replica([replica], RoundRobin(), deadline) is None
        assert backend.attempts == 2


@pytest.mark.parametrize(
    ("tried", "down", "expected"),
    [
        pytest.param(set(), False, {"s-2"}, id="sticks-to-its-session"),
        pytest.param({"s-2"}, False, {"s-1", "s-3"}, id="tried-there-already"),
        pytest.param(set(), True, {"s-1", "s-3"}, id="its-replica-is-down"),
    ],
)
def test_a_client_sticks_to_the_replica_of_its_own_session(
    monkeypatch: pytest.MonkeyPatch, tried: set[str], down: bool, expected: set[str]
) -> None:
    members = replicas()
    # The current client has a per-client session on s-2.
    monkeypatch.setattr(members[1], "serves_current_client", lambda: True)
    if down:
        members[1].state = ReplicaState.ERROR
    balancer = RoundRobin()
    picked = {pick(members, balancer, tried).id for _ in range(6)}  # type: ignore[union-attr]
    assert picked == expected
