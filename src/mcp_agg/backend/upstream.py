"""Upstream: one backend replica, its long-lived MCP session and its life cycle.

A replica keeps one client session for its whole life; every call reuses it (FastMCP's
own proxy opens a session, or spawns a process, per call). A supervisor task connects,
fetches the replica's listing, serves until the session is lost, and reconnects with
jittered exponential backoff until the gateway stops:

    registered → connecting → connected ⇄ error → stopped

A call that finds no replica to take it may cut a backoff short (`expedite`): the backend
may be back long before the backoff ends, and the call waits within its deadline.

The supervision is here; the rest of a replica is assembled from mixins over its shared
state (replica.py), one concern each: opening the session (connect.py), requests on it
(requests.py), health probes (probing.py); the relay of a backend's messages to calling
clients is an object of its own (relay.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from fastmcp import Client

from mcp_agg.backend.connect import ConnectMixin
from mcp_agg.backend.listing import Listing, fetch_listing
from mcp_agg.backend.probing import ProbingMixin
from mcp_agg.backend.replica import ReplicaState, ReplicaStats

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["Listing", "ReplicaState", "ReplicaStats", "Upstream"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconnectWait:
    """Reconnect backoff: `multiplier` seconds doubling to `max`, with up to `jitter`
    seconds added so replicas that failed together do not come back in lockstep."""

    multiplier: float = 0.5
    max: float = 30.0
    jitter: float = 0.5

    def after(self, failures: int) -> float:
        """The wait after `failures` failures in a row, without the jitter."""
        return min(self.max, self.multiplier * 2.0 ** min(failures, 16))


RECONNECT_WAIT = ReconnectWait()
#: A session that lived this long (seconds) was not a crash loop.
STABLE_AFTER = 5.0
#: Calls cut a replica's reconnect backoff short at most once in this many seconds: a
#: backend that is down is not tried once per call.
EXPEDITE_INTERVAL = 1.0


class Upstream(ConnectMixin, ProbingMixin):
    """One backend replica."""

    async def run(self) -> None:
        """Supervise the replica until `stop()`: connect, serve, reconnect with backoff.
        Its per-client sessions live as long as it (backend/clientsessions.py)."""
        self._supervised = True
        try:
            async with self.clients.running():
                await self._supervise()
        finally:
            self._supervised = False
            self.state = ReplicaState.STOPPED
            self.first_attempt.set()
            self.stopped.set()
            self._notify()

    async def _supervise(self) -> None:
        flapping = 0
        while not self._stopping:
            with contextlib.suppress(Exception):
                try:
                    await self._serve_once()
                except Exception as first:
                    await self._reconnect(first)
            # The session worked and was lost. Reconnect at once, unless it keeps
            # dying young: then back off as for a failure to connect.
            lived = time.time() - (self.stats.connected_at or 0.0)
            flapping = flapping + 1 if lived < STABLE_AFTER else 0
            if flapping and not self._stopping:
                delay = RECONNECT_WAIT.after(flapping)
                logger.warning("backend %s keeps dropping; reconnecting in %.1fs", self.id, delay)
                await self._sleep_unless_stopping(delay)

    async def _reconnect(self, first: Exception) -> None:
        """Attempts after a failed one, with backoff, until one serves and its session is
        lost, or the replica stops; re-raises the last failure when it stops. tenacity is
        imported here, at the first failure: most replicas never fail."""
        from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

        from mcp_agg.resilience.retryloop import resume

        retrying = AsyncRetrying(
            wait=wait_exponential_jitter(
                multiplier=RECONNECT_WAIT.multiplier,
                max=RECONNECT_WAIT.max,
                jitter=RECONNECT_WAIT.jitter,
            ),
            retry=retry_if_exception_type(Exception),
            stop=self._should_stop,
            sleep=self._sleep_unless_stopping,
            before_sleep=self._log_retry,
            reraise=True,
        )
        await resume(retrying, first, lambda _attempt: self._serve_once())

    async def stop(self) -> None:
        """Ask the supervisor to close the session and stop; returns at once."""
        self._stopping = True
        self._wake.set()
        self._lost.set()
        if self._attempt is not None:
            self._attempt.cancel()

    def expedite(self) -> bool:
        """A call waits for this replica: whether it may, because the replica is connecting
        or is about to. A replica waiting out its reconnect backoff tries at once, unless
        a call made it try less than `EXPEDITE_INTERVAL` ago: then the backend was down a
        moment ago, and the call is better failed (or sent elsewhere) now."""
        if self.state is ReplicaState.CONNECTING:
            return True
        if self.state is not ReplicaState.ERROR or self._stopping or not self._supervised:
            return False
        if self._wake.is_set():
            return True  # asked for, and not begun yet
        now = time.monotonic()
        if now - self._expedited_at < EXPEDITE_INTERVAL:
            return False
        self._expedited_at = now
        self._wake.set()
        logger.info("backend %s: reconnecting now, a call is waiting for it", self.id)
        return True

    def _should_stop(self, _state: RetryCallState) -> bool:
        return self._stopping

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        """A reconnect backoff, ended early by `stop()` or by `expedite()`."""
        with anyio.move_on_after(seconds):
            await self._wake.wait()

    def _log_retry(self, state: RetryCallState) -> None:
        if self._stopping:
            return
        delay = state.next_action.sleep if state.next_action else 0.0
        logger.warning("backend %s: %s; retrying in %.1fs", self.id, self.stats.last_error, delay)

    async def _serve_once(self) -> None:
        """One connection: connect, list, serve until lost. Raises if connecting fails."""
        self.state = ReplicaState.CONNECTING
        self._lost = anyio.Event()
        self._exited = None
        if not self._stopping:
            self._wake = anyio.Event()  # this attempt is the one a call asked for
        self._notify()
        try:
            async with self._connected_client() as client:
                self._mark_connected(client)
                async with anyio.create_task_group() as tg:

                    def start_refresh() -> None:
                        tg.start_soon(self._refresh_listing, client, start_refresh)

                    self._start_refresh = start_refresh
                    if self._refresh_wanted:  # asked for while connecting
                        self._request_refresh()
                    if self.health.policy.interval > 0:
                        tg.start_soon(self._check_health)
                    try:
                        await self._lost.wait()
                    finally:
                        self._start_refresh = None
                    tg.cancel_scope.cancel()
        except Exception as exc:
            if self._stopping:
                return
            self._record_error(exc)
            self.state = ReplicaState.ERROR
            self.first_attempt.set()
            self._notify()
            raise
        finally:
            self._client = None
        if not self._stopping:
            logger.warning("backend %s: connection lost: %s", self.id, self.stats.last_error)
            self.state = ReplicaState.ERROR
            self._notify()

    def _mark_connected(self, client: Client[Any]) -> None:
        """The session is open and listed: the replica serves on it from now."""
        self._client = client
        self.stats.connects += 1
        self.stats.connected_at = time.time()
        self.stats.protocol_version = client.protocol_version
        info = client.server_info
        self.stats.server_name = info.name if info else None
        self.state = ReplicaState.CONNECTED
        self.health.reset()
        # The first connection is reported by the startup feedback (`Gateway.startup`),
        # or by a reload's: here only in detail, at DEBUG; a reconnection at INFO.
        logger.log(
            logging.INFO if self.stats.connects > 1 else logging.DEBUG,
            "backend %s %s (%s, protocol %s): %d tools, %d resources, %d templates, %d prompts",
            self.id,
            "reconnected" if self.stats.connects > 1 else "connected",
            self.spec.server.kind,
            client.protocol_version,
            len(self.listing.tools),
            len(self.listing.resources),
            len(self.listing.templates),
            len(self.listing.prompts),
        )
        self.first_attempt.set()
        self._notify()

    async def _refresh_listing(self, client: Client[Any], start: Callable[[], None]) -> None:
        """Fetch the listing until no change is left unfetched; then the next change
        starts a task again (`start`): no task waits here between changes."""
        while self._refresh_wanted:
            self._refresh_wanted = False
            try:
                self.listing = await fetch_listing(client, at_once=self.lists_at_once)
            except Exception as exc:
                self._lose(exc)
                return
            logger.info("backend %s: listing refreshed", self.id)
            self._notify()
        if not self._lost.is_set():  # still serving on this session
            self._start_refresh = start
