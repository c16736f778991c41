"""Active health checks of a connected replica: a probe every `interval`, while it serves.

A mixin over the requests (requests.py): a probe is a request on the replica's session.
The verdict is `HealthState`'s (resilience/health.py). A probe that finds the connection
lost or the session unknown to the backend gives the session up for the supervisor to
reconnect, and so does an ejected replica whose probes are answered with errors: its
backend answers, but not on this session. An ejected replica whose probes time out keeps
its session for `connect_timeout`, as long as opening a new one may take, and is
readmitted if they pass by then: a slow backend is not made faster by a new session. One
still timing out then is reconnected: a backend process that hangs is restarted, and a
session whose transport is wedged (a request stuck on a dead connection holds up every
later one) is replaced.
"""

from __future__ import annotations

import logging

import anyio

from mcp_agg.backend.replica import describe
from mcp_agg.backend.requests import RequestsMixin
from mcp_agg.errors import UpstreamUnavailable, connection_lost

__all__ = ["ProbingMixin"]

logger = logging.getLogger(__name__)


class ProbingMixin(RequestsMixin):
    """A replica's health probes, which eject it from balancing and readmit it."""

    async def probe(self) -> None:
        """One health probe: a cheap request that works in both protocol eras.

        `ping` does not exist in the modern era; `tools/list` is served by every
        server the gateway lists tools from.
        """
        client = self._require_client()
        with anyio.fail_after(self.health.policy.timeout), self._session_refusal("health probe"):
            await client.session.list_tools()

    async def _check_health(self) -> None:
        policy = self.health.policy
        while True:
            await anyio.sleep(policy.interval)
            try:
                await self.probe()
            except Exception as exc:
                changed = self.health.record(ok=False)
                if changed:
                    logger.warning(
                        "backend %s ejected: health probe failed: %s", self.id, describe(exc)
                    )
                if self._reconnect_after(exc):
                    self._lose(exc)
                    return
            else:
                changed = self.health.record(ok=True)
                if changed:
                    logger.info("backend %s readmitted: health probes pass", self.id)
            if changed:
                self._notify()

    def _reconnect_after(self, exc: Exception) -> bool:
        """Whether a failed probe means the session must be given up (see above)."""
        if connection_lost(exc) or isinstance(exc, UpstreamUnavailable):
            return True
        if self.health.healthy:
            return False
        timed_out = isinstance(exc, TimeoutError)
        return not timed_out or self.health.ejected_for() >= self.connect_timeout
