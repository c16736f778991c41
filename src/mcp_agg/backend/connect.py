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
import anyio.abc
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.era import announces_changes, is_modern
from mcp_agg.backend.listen import ChangeListener
from mcp_agg.backend.listing import ListChangedHandler, fetch_listing
from mcp_agg.backend.process import launched_process
from mcp_agg.backend.replica import ReplicaCore
from mcp_agg.backend.transports import make_transport, relay_options
from mcp_agg.errors import UpstreamConnectError

__all__ = ["ConnectMixin"]

logger = logging.getLogger(__name__)

#: How often a launched HTTP backend's port is probed while it starts.
_LAUNCH_POLL = 0.1
#: How long closing a backend session may take before it is abandoned (seconds).
_CLOSE_GRACE = 2.0


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
                    self.listing = await fetch_listing(client)
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
        """A connected client on the replica's transport; a stdio child's stderr is kept."""
        server = self.spec.server
        if server.url is not None and server.command is not None:
            return await self._connect_launched(stack)
        stderr = self.output.open() if server.url is None else None
        try:
            transport = make_transport(
                self.spec, stderr, self.on_http_request, self._process_exited
            )
            return await self._enter(stack, transport)
        finally:
            self.output.close_writer()

    async def _connect_launched(self, stack: contextlib.AsyncExitStack) -> Client[Any]:
        """Start an HTTP backend's process, then connect once it listens."""
        server = self.spec.server
        command = self.spec.command
        assert command is not None
        process = await stack.enter_async_context(
            launched_process(
                command, list(server.args), dict(server.env), self.spec.cwd, self.output
            )
        )
        while True:
            try:
                transport = make_transport(self.spec, on_request=self.on_http_request)
                return await self._enter(stack, transport)
            except Exception:
                if process.returncode is not None:
                    raise UpstreamConnectError(
                        f"process exited with code {process.returncode}", replica=self.id
                    ) from None
                await anyio.sleep(_LAUNCH_POLL)  # still binding its port

    async def _enter(self, stack: contextlib.AsyncExitStack, transport: Any) -> Client[Any]:
        client: Client[Any] = Client(
            transport,
            name=f"mcp-agg/{self.id}",
            # A lambda, not `self._refresh.set`: the event is replaced after each refresh.
            message_handler=ListChangedHandler(lambda: self._refresh.set(), self._resource_updated),
            init_timeout=self.connect_timeout,
            # `protocol`: the newest era the backend supports by default (an SSE
            # transport is handshake-only), or the one the operator pinned.
            mode="legacy" if self.spec.server.protocol == "legacy" else "auto",
        )
        # Not exposed by the constructor: the session class and header policy of a relay.
        client._transport_options = relay_options()
        # The SDK's own callbacks, not FastMCP's wrappers: the gateway relays the
        # backend's requests as they are to the client whose call they belong to.
        client._session_kwargs["logging_callback"] = self._relay.log
        client._session_kwargs["sampling_callback"] = self._relay.sampling
        client._session_kwargs["elicitation_callback"] = self._relay.elicitation
        client._session_kwargs["list_roots_callback"] = self._relay.roots
        await client.__aenter__()  # type: ignore[no-untyped-call]
        stack.push_async_callback(_close_quietly, client)
        if self.spec.server.protocol == "modern" and not is_modern(client):
            raise UpstreamConnectError(
                f'protocol = "modern": the backend speaks only MCP {client.protocol_version}',
                replica=self.id,
            )
        return client

    async def _listen(
        self, stack: contextlib.AsyncExitStack, tg: anyio.abc.TaskGroup, client: Client[Any]
    ) -> None:
        """A modern-era session's change stream, open as long as the session is, and
        acknowledged by the backend before the replica serves."""
        listener = ChangeListener(
            self.id,
            client.session,
            on_change=lambda: self._refresh.set(),
            on_updated=self._resource_updated,
            uris=lambda: self.subscriptions,
        )
        stack.callback(setattr, self, "listener", None)
        stack.callback(tg.cancel_scope.cancel)  # before the session closes under it
        self.listener = listener
        tg.start_soon(listener.run)
        await listener.opened()

    async def _restore_session_state(self, client: Client[Any]) -> None:
        """What clients set up through the gateway, applied to a new backend session
        (a modern-era session's subscriptions are its change stream's)."""
        if is_modern(client):
            return
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


async def _close_quietly(client: Client[Any]) -> None:
    """Close a session, never for longer than `_CLOSE_GRACE`; then the transport, which
    waits until a stdio backend's process is gone (SIGKILLed on its deadline at the
    latest), so that a replica never starts a process beside one still stopping.

    A dead HTTP backend makes leaving the client re-raise its connect error, and a hung
    one would hold a handshake-era session's closing DELETE for the HTTP timeout.
    """
    with anyio.move_on_after(_CLOSE_GRACE, shield=True), contextlib.suppress(Exception):
        await client.close()  # type: ignore[no-untyped-call]
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await client.transport.close()
