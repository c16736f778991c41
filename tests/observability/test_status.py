"""`replica_status`: what `status`, the admin API and `gateway_health` say of a replica."""

from __future__ import annotations

import pytest

from mcp_agg.backend.upstream import ReplicaState
from mcp_agg.observability.status import replica_status
from tests.fakes import upstreams


@pytest.mark.parametrize(
    ("state", "passing", "health"),
    [
        (ReplicaState.CONNECTED, True, "ok"),
        (ReplicaState.CONNECTED, False, "ejected"),
        (ReplicaState.ERROR, True, "down"),
        (ReplicaState.CONNECTING, True, "down"),
        (ReplicaState.REGISTERED, True, "down"),
        (ReplicaState.STOPPED, True, "down"),
    ],
)
async def test_health_is_ok_only_while_connected_and_passing(
    state: ReplicaState, passing: bool, health: str
) -> None:
    (replica,) = upstreams("svc")
    replica.state = state
    replica.health.healthy = passing
    row = replica_status(replica)
    assert row["health"] == health
    assert row["healthy"] is (health == "ok")


async def test_the_exit_code_of_the_backends_process_is_shown() -> None:
    (replica,) = upstreams("svc")
    assert replica_status(replica)["exit_code"] is None
    replica._process_exited(3)
    assert replica_status(replica)["exit_code"] == 3


@pytest.mark.parametrize("mode", ["shared", "per_client"])
async def test_the_session_mode_and_the_per_client_sessions_are_shown(mode: str) -> None:
    (replica,) = upstreams("svc", session=mode)
    row = replica_status(replica)
    assert (row["session"], row["sessions"]) == (mode, 0)
