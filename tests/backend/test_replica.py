"""A replica's record of how its backend's process ended: in its state, its errors and
`describe_exit`."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.replica import describe_exit
from mcp_agg.backend.upstream import ReplicaState
from tests.fakes import connected, upstreams


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (0, "exit code 0"),
        (3, "exit code 3"),
        (-9, "killed by SIGKILL"),
        (-15, "killed by SIGTERM"),
        (-200, "killed by signal 200"),
    ],
)
def test_describe_exit(code: int, said: str) -> None:
    assert describe_exit(code) == said


async def test_a_process_that_ended_by_itself_loses_the_session_and_says_how() -> None:
    (replica,) = upstreams("svc")
    connected(replica)
    replica._process_exited(3)
    assert replica.state is ReplicaState.ERROR
    assert replica.stats.exit_code == 3
    assert replica.stats.last_error == "backend process ended (exit code 3)"
    # A request that fails on the lost session afterwards says it too.
    replica._record_error(MCPError(code=-32000, message="Connection closed"))
    assert replica.stats.last_error == "Connection closed (exit code 3)"


async def test_an_error_without_an_ended_process_has_no_exit_code() -> None:
    (replica,) = upstreams("svc")
    replica._record_error(MCPError(code=-32000, message="Connection closed"))
    assert replica.stats.last_error == "Connection closed"
    assert replica.stats.exit_code is None
