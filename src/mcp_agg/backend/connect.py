"""Opening a replica's session: transport, launched process, client, listing, session state.

A mixin over `ReplicaCore` (see replica.py): what it opens is the replica's own, and it
wires the session to the replica's relay and list-change handling. Opening is bounded
by `connect_timeout`, and `stop()` cancels it at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Self

import anyio
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.listing import ListChangedHandler, fetch_listing
from mcp_agg.backend.opener import SessionOpener
from mcp_agg.backend.replica import ReplicaCore
from mcp_agg.errors import UpstreamConnectError

__all__ = ["ConnectMixin"]

logger = logging.getLogger(__name__)


class ConnectMixin(ReplicaCore):
    """How a replica's session is opened, listed and given back its session state."""

    @contextlib.asynccontextmanager
    async def _connected_client(self) -> AsyncIterator[Client[Any]]:
        """A connected, listed client; the backend's process (if any) lives as long as it."""
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.output.aclose)
            try:
                with anyio.fail_after(self.connect_timeout), anyio.CancelScope() as attempt:
                    # stop() cancels a connection attempt at once: a backend still
                    # starting must not hold up (or outlive) a shutdown.
                    self._attempt = attempt
                    if self._stopping:
                        attempt.cancel()
                    client = await self._open(stack)
                    self.listing = await fetch_listing(client)
                    await self._restore_session_state(client)
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
        """A connected client on the replica's transport; a stdio child's stderr is kept."""
        return await self.opener().open(stack)

    def opener(self) -> SessionOpener:
        """How a session to this replica's backend is opened, with this replica's relay."""
        return SessionOpener(
            self.spec,
            self.connect_timeout,
            self._relay,
            # A lambda, not `self._refresh.set`: the event is replaced after each refresh.
            ListChangedHandler(lambda: self._refresh.set(), self._resource_updated),
            self.output,
            self.on_http_request,
            self._process_exited,
        )

    async def _restore_session_state(self, client: Client[Any]) -> None:
        """What clients set up through the gateway, applied to a new backend session."""
        caps = client.server_capabilities
        try:
            if self.log_level is not None and caps is not None and caps.logging is not None:
                await client.session.set_logging_level(self.log_level)
            for uri in sorted(self.subscriptions):
                await client.session.subscribe_resource(uri)
        except MCPError as exc:
            # The backend refused what it accepted on its last session: keep serving.
            logger.warning("backend %s: restoring session state: %s", self.id, exc)

    async def _resource_updated(self: Self, uri: str) -> None:
        if self._on_resource_updated is not None:
            await self._on_resource_updated(self, uri)
