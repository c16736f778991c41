"""The servers' sign-in states as the console shows them, read again every few seconds.

The servers page polls every second, and a sign-in's state is read from where its tokens
rest (the OS keyring or a file, `backend/oauth/state.py`): once a second per OAuth server
for every open page would be a keyring round trip each time for a state that changes
when someone signs in. So the console keeps each server's state for `TTL` seconds, and
forgets a server's when a sign-in started from the console completes. `mcp-agg status
--json` reads `sign_in_states` itself, fresh every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mcp_agg.backend.oauth.state import sign_in_state

if TYPE_CHECKING:
    from mcp_agg.config import ReplicaSpec

__all__ = ["TTL", "SignInCache"]

#: Seconds a server's sign-in state is shown before it is read again.
TTL = 5.0


class SignInCache:
    """`sign_in_states`, each server's kept for `ttl` seconds of `clock`."""

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._kept: dict[str, tuple[float, dict[str, Any]]] = {}

    async def states(self, specs: Iterable[ReplicaSpec]) -> dict[str, dict[str, Any]]:
        """The sign-in state per server with `auth` among `specs` (one per server)."""
        servers = {spec.group: spec for spec in specs if spec.server.auth is not None}
        for gone in self._kept.keys() - servers.keys():
            del self._kept[gone]
        states: dict[str, dict[str, Any]] = {}
        for name, spec in servers.items():
            kept = self._kept.get(name)
            now = self._clock()
            if kept is None or now - kept[0] >= self._ttl:
                kept = self._kept[name] = (now, await sign_in_state(spec))
            states[name] = dict(kept[1])
        return states

    def forget(self, server: str) -> None:
        """Read `server`'s state afresh next time (a sign-in to it completed)."""
        self._kept.pop(server, None)
