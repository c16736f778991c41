"""Opening a replica's session: transport, launched process, client, listing, session state.

A mixin over `ReplicaCore` (see replica.py): what it opens is the replica's own, and it
wires the session to the replica's relay and list-change handling. Opening is bounded
by `connect_timeout`, and `stop()` cancels it at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.era import announces_changes, is_modern, takes_log_level
from mcp_agg.backend.listen import ChangeListener
from mcp_agg.backend.listing import ListChangedHandler, fetch_listing
from mcp_agg.backend.opener import SessionOpener
from mcp_agg.backend.replica import ReplicaCore
from mcp_agg.errors import UpstreamConnectError

if TYPE_CHECKING:
    from mcp_agg.backend.early import EarlyStart

__all__ = ["LISTEN_ACK_TIMEOUT", "ConnectMixin"]

logger = logging.getLogger(__name__)

#: How long a modern-era backend may take to acknowledge its change stream (seconds).
LISTEN_ACK_TIMEOUT = 5.0


class ConnectMixin(ReplicaCore):
    """How a replica's session is opened, listed and given back its session state."""

    @contextlib.asynccontextmanager
    async def _connected_client(self) -> AsyncIterator[Client[Any]]:
        """A connected, listed client; the backend's process (if any) lives as long as it."""
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.output.aclose)
            # What runs beside the session for as long as it lasts (a change stream).
            beside = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(beside.cancel_scope.cancel)
            try:
                with anyio.fail_after(self.connect_timeout), anyio.CancelScope() as attempt:
                    # stop() cancels a connection attempt at once: a backend still
                    # starting must not hold up (or outlive) a shutdown.
                    self._attempt = attempt
                    if self._stopping:
                        attempt.cancel()
                    client = await self._open(stack)
                    self.listing = await fetch_listing(client, at_once=self.lists_at_once)
                    await self._restore_session_state(client)
                    if is_modern(client) and announces_changes(client):
                        await self._listen(stack, beside, client)
            except TimeoutError as exc:
                raise UpstreamConnectError(
                    f"did not connect within connect_timeout ({self.connect_timeout:g}s)",
                    replica=self.id,
                ) from exc
            except Exception:
                await self.output.aclose()  # read what the backend said before it failed
                raise
            finally:
                self._attempt = None
            if attempt.cancelled_caught:
                raise UpstreamConnectError("stopped while connecting", replica=self.id)
            yield client

    async def _open(self, stack: contextlib.AsyncExitStack) -> Client[Any]:
        """A connected client on the replica's transport; a stdio child's stderr is kept.
        The first session takes the process `serve` started early, if there is one."""
        early = self.early_starts.take(self.spec) if self.early_starts is not None else None
        return await self.opener(early).open(stack)

    def opener(self, early: EarlyStart | None = None) -> SessionOpener:
        """How a session to this replica's backend is opened, with this replica's relay
        (`early`: the backend's process, already running)."""
        return SessionOpener(
            self.spec,
            self.connect_timeout,
            self._relay,
            ListChangedHandler(self._request_refresh, self._resource_updated),
            self.output,
            self.on_http_request,
            self._process_exited,
            early=early,
        )

    async def _listen(
        self, stack: contextlib.AsyncExitStack, tg: anyio.abc.TaskGroup, client: Client[Any]
    ) -> None:
        """A modern-era session's change stream, open as long as the session is, and
        acknowledged by the backend before the replica serves. A backend that does not
        acknowledge it within `LISTEN_ACK_TIMEOUT` serves without one (the suite's own
        reference server never does): its changes are not heard, its calls still are."""
        listener = ChangeListener(
            self.id,
            client.session,
            on_change=self._request_refresh,
            on_updated=self._resource_updated,
            uris=lambda: self.subscriptions,
        )
        stack.callback(setattr, self, "listener", None)
        stack.callback(tg.cancel_scope.cancel)  # before the session closes under it
        self.listener = listener
        scope = anyio.CancelScope()

        async def listening() -> None:
            with scope:
                await listener.run()

        tg.start_soon(listening)
        with anyio.move_on_after(min(LISTEN_ACK_TIMEOUT, self.connect_timeout / 2)) as waited:
            await listener.opened()
        if waited.cancelled_caught:
            scope.cancel()
            self.listener = None
            logger.warning(
                "backend %s: its change stream (subscriptions/listen) was not acknowledged "
                'within %gs: its changes are not heard; protocol = "legacy" hears them',
                self.id,
                LISTEN_ACK_TIMEOUT,
            )

    async def _restore_session_state(self, client: Client[Any]) -> None:
        """What clients set up through the gateway, applied to a new backend session
        (a modern-era session's subscriptions are its change stream's)."""
        if is_modern(client):
            return
        try:
            if self.log_level is not None and takes_log_level(client):
                await client.session.set_logging_level(self.log_level)
            for uri in sorted(self.subscriptions):
                await client.session.subscribe_resource(uri)
        except MCPError as exc:
            # The backend refused what it accepted on its last session: keep serving.
            logger.warning("backend %s: restoring session state: %s", self.id, exc)
