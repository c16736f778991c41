"""When a replica gives up its session: a request the backend refused for a session it no
longer knows, and failed health probes (backend/requests.py, backend/probing.py)."""

from __future__ import annotations

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.transports.sessions import note_session_refusal
from mcp_agg.backend.upstream import ReplicaState, Upstream
from mcp_agg.errors import FailureKind, UpstreamSessionExpired, UpstreamUnavailable, classify
from mcp_agg.resilience.health import HealthState
from tests.fakes import FakeClock, connected, upstreams

#: What the SDK makes of the TypeScript SDK's 400 for an unknown session.
SERVER_ERROR = MCPError(-32603, "Server returned an error response")


def replica() -> Upstream:
    return connected(upstreams("s")[0], session=True)


def refused() -> httpx2.Response:
    request = httpx2.Request("POST", "http://backend.test/mcp", headers={"mcp-session-id": "1"})
    return httpx2.Response(404, request=request)


async def refused_request() -> None:
    """A request as the SDK's HTTP transport sends it to a backend that no longer knows
    its session: the answer goes through the response hook, then the SDK raises."""
    await note_session_refusal(refused())
    raise SERVER_ERROR


async def test_a_request_refused_for_its_session_gives_the_session_up() -> None:
    target = replica()
    with pytest.raises(UpstreamSessionExpired) as raised, target._session_refusal("tools/call t"):
        await refused_request()
    assert classify(raised.value) is FailureKind.SESSION_EXPIRED
    assert "no longer knows the session" in str(raised.value)
    assert target.state is ReplicaState.ERROR
    assert target._lost.is_set()


async def test_the_sdks_own_session_error_gives_the_session_up() -> None:
    target = replica()
    with pytest.raises(UpstreamSessionExpired), target._session_refusal("tools/call t"):
        raise MCPError(-32600, "Session terminated")
    assert target._lost.is_set()


async def test_other_failures_pass_through_and_keep_the_session() -> None:
    target = replica()
    with pytest.raises(MCPError) as raised, target._session_refusal("tools/call t"):
        raise SERVER_ERROR
    assert raised.value is SERVER_ERROR
    assert target.state is ReplicaState.CONNECTED
    assert not target._lost.is_set()


def ejected(target: Upstream, *, seconds: float = 0.0) -> Upstream:
    """`target` ejected by its health checks `seconds` ago (its connect_timeout is 1 s)."""
    clock = FakeClock()
    target.health = HealthState(target.health.policy, clock=clock)
    for _ in range(target.health.policy.unhealthy_threshold):
        target.health.record(ok=False)
    assert not target.health.healthy
    clock.advance(seconds)
    return target


@pytest.mark.parametrize(
    ("make", "exc", "reconnect"),
    [
        pytest.param(replica, SERVER_ERROR, False, id="one-failed-probe"),
        pytest.param(lambda: ejected(replica()), SERVER_ERROR, True, id="ejected-answering-errors"),
        pytest.param(lambda: ejected(replica()), TimeoutError(), False, id="ejected-and-hung"),
        pytest.param(
            lambda: ejected(replica(), seconds=1.0), TimeoutError(), True, id="hung-for-too-long"
        ),
        pytest.param(replica, UpstreamSessionExpired("gone", replica="s-1"), True, id="session"),
        pytest.param(replica, MCPError(-32000, "Connection closed"), True, id="closed"),
        pytest.param(replica, UpstreamUnavailable("connection closed"), True, id="unavailable"),
    ],
)
def test_which_failed_probes_give_the_session_up(
    make: object, exc: Exception, reconnect: bool
) -> None:
    target = make()  # type: ignore[operator]
    assert target._reconnect_after(exc) is reconnect
