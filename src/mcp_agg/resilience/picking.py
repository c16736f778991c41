"""Which replica of a group takes an attempt: the admitted candidates, and the balancer's pick.

A replica is a candidate while it is connected, healthy, admitted by its breaker, not
drained by an operator, and not yet tried by this call. The strategy among candidates is
the group's `Balancer` (balancer.py); this module decides who may be picked at all,
waits for a replica that is reconnecting (asking one in its reconnect backoff to try
now), and says why nobody could be.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from mcp_agg.backend.upstream import Upstream
from mcp_agg.resilience.balancer import Balancer

__all__ = ["await_replica", "nobody_available", "pick", "unavailable"]

#: How often a call waiting for a reconnecting replica looks again (seconds).
RECONNECT_POLL = 0.02


def pick(replicas: Sequence[Upstream], balancer: Balancer, tried: set[str]) -> Upstream | None:
    """The balancer's choice among the candidates; None when there is none. A client with
    a session of its own on a candidate (a per-client server) sticks to it: the balancer
    is not asked."""
    candidates = [
        r
        for r in replicas
        if r.id not in tried and r.available and not r.drained and r.breaker.allows()
    ]
    if not candidates:
        return None
    for replica in candidates:
        if replica.serves_current_client():
            return replica
    return balancer.pick(candidates)


async def await_replica(
    replicas: Sequence[Upstream], balancer: Balancer, deadline: float
) -> Upstream | None:
    """Any admitted replica, waiting while one is reconnecting (a restart, an expired
    HTTP session being re-initialized, a backoff cut short for the call: `expedite`)
    but never past the deadline."""
    while True:
        replica = pick(replicas, balancer, set())
        if replica is not None or anyio.current_time() >= deadline:
            return replica
        # Every replica is asked, not only the first that may come back.
        if not [r for r in replicas if r.expedite()]:
            return None
        await anyio.sleep(RECONNECT_POLL)


def nobody_available(
    group: str, replicas: Sequence[Upstream], tried: set[str], last: BaseException | None
) -> str:
    """Why no replica of `group` could take a call: each one's state, and the last error."""
    states = ", ".join(
        f"{r.id} {'tried' if r.id in tried else r.state}"
        + ("" if r.breaker.allows() else " (circuit open)")
        + ("" if r.health.healthy else " (unhealthy)")
        + (" (drained)" if r.drained else "")
        for r in replicas
    )
    reason = f"; last error: {last}" if last else ""
    return f"no replica of {group!r} could take it ({states}){reason}"


def unavailable(replica: Upstream) -> str:
    """Why a replica cannot take a call now."""
    why = (
        str(replica.state)
        + ("" if replica.health.healthy else ", unhealthy")
        + (", drained" if replica.drained else "")
    )
    last = replica.stats.last_error
    return f"backend {replica.id} is not available ({why})" + (
        f"; last error: {last}" if last else ""
    )
