"""Opening one client session to a replica's backend: transport, launched process, client.

A replica opens its own session with it (connect.py), and so does each per-client
session of the replica (clientsessions.py): the same transport, the same relay options
and callbacks, each with a relay, a message handler and a stderr of its own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
from fastmcp import Client
from fastmcp.client.messages import MessageHandler

from mcp_agg.backend.era import is_modern
from mcp_agg.backend.process import OutputCapture, launched_process
from mcp_agg.backend.relay import ClientRelay
from mcp_agg.backend.transports import ExitHook, RequestHook, make_transport, relay_options
from mcp_agg.backend.transports.http import http_transport
from mcp_agg.backend.transports.stdio import stdio_transport
from mcp_agg.config import ReplicaSpec
from mcp_agg.errors import UpstreamConnectError

if TYPE_CHECKING:
    from mcp_agg.backend.early import EarlyStart
    from mcp_agg.backend.oauth.team import UserSignIn

__all__ = ["SessionOpener", "close_quietly", "session_closed"]

#: How often a launched HTTP backend's port is probed while it starts.
_LAUNCH_POLL = 0.1
#: How long closing a backend session may take before it is abandoned (seconds).
_CLOSE_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class SessionOpener:
    """How one session to `spec`'s backend is opened, and where what it sends goes."""

    spec: ReplicaSpec
    connect_timeout: float
    #: Takes the backend's log messages and requests to their client.
    relay: ClientRelay
    #: Sees the backend's list_changed and resources/updated notifications.
    handler: MessageHandler
    #: A stdio backend's stderr (and a launched one's output).
    output: OutputCapture
    on_http_request: RequestHook | None = None
    #: Told a stdio backend's exit code when its process ends by itself.
    on_exit: ExitHook | None = None
    #: Speak the handshake era whatever the backend supports (for handshake-era clients).
    legacy: bool = False
    #: The user whose token set a `per_user` server's session carries (a per-client
    #: session's); None: the gateway's own sign-in (`mcp-agg login`).
    user: UserSignIn | None = None
    #: A stdio backend's process started before the session (`backend/early.py`): the
    #: session takes it over instead of spawning one.
    early: EarlyStart | None = None

    async def open(self, stack: contextlib.AsyncExitStack, *, launch: bool = True) -> Client[Any]:
        """A connected client, closed (and its process reaped) by `stack`. A server with
        both `command` and `url` is started first, unless `launch` is false (its process
        is already running: another session of the replica started it)."""
        server = self.spec.server
        if server.auth is not None and server.auth.per_user and self.user is not None:
            # `UserNotSignedIn` when the user has no token set: they get a link.
            auth = await self.user.auth(self.spec)
            transport = http_transport(self.spec, on_request=self.on_http_request, auth=auth)
            return await self._enter(stack, transport)
        if server.auth is not None:
            # The OAuth client and token storage: imported for a server with `auth`.
            from mcp_agg.backend.oauth.provider import require_sign_in

            await require_sign_in(self.spec)
        if server.url is not None and server.command is not None and launch:
            return await self._connect_launched(stack)
        if self.early is not None:
            self.output.follow(self.early.stderr)
            transport = stdio_transport(self.spec, on_exit=self.on_exit, process=self.early.process)
            return await self._enter(stack, transport)
        stderr = self.output.open() if server.url is None else None
        try:
            transport = make_transport(self.spec, stderr, self.on_http_request, self.on_exit)
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
                        f"process exited with code {process.returncode}", replica=self.spec.id
                    ) from None
                await anyio.sleep(_LAUNCH_POLL)  # still binding its port

    async def _enter(self, stack: contextlib.AsyncExitStack, transport: Any) -> Client[Any]:
        client: Client[Any] = Client(
            transport,
            name=f"mcp-agg/{self.spec.id}",
            message_handler=self.handler,
            init_timeout=self.connect_timeout,
            # `protocol`: the newest era the backend supports by default (an SSE
            # transport is handshake-only), or the one the operator pinned.
            mode=self._mode(),
        )
        # Not exposed by the constructor: the session class and header policy of a relay.
        client._transport_options = relay_options()
        # The SDK's own callbacks, not FastMCP's wrappers: the gateway relays the
        # backend's requests as they are to the client they belong to.
        client._session_kwargs["logging_callback"] = self.relay.log
        client._session_kwargs["sampling_callback"] = self.relay.sampling
        client._session_kwargs["elicitation_callback"] = self.relay.elicitation
        client._session_kwargs["list_roots_callback"] = self.relay.roots
        await client.__aenter__()  # type: ignore[no-untyped-call]
        stack.push_async_callback(close_quietly, client)
        if self.spec.server.protocol == "modern" and not is_modern(client):
            raise UpstreamConnectError(
                f'protocol = "modern": the backend speaks only MCP {client.protocol_version}',
                replica=self.spec.id,
            )
        return client

    def _mode(self) -> Literal["auto", "legacy"]:
        """The era to ask for: `protocol` pins one (a "modern" pin fails below on a
        handshake-only backend); "auto" is the newest the backend speaks, unless the
        session is for handshake-era clients."""
        protocol = self.spec.server.protocol
        if protocol == "legacy" or (protocol == "auto" and self.legacy):
            return "legacy"
        return "auto"


async def close_quietly(client: Client[Any]) -> None:
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


def session_closed(client: Client[Any]) -> bool:
    """Whether the client's session has already lost its connection.

    The SDK marks its dispatcher closed when the transport ends (a stdio process exited,
    an HTTP stream broke); there is no public flag, so this reads it defensively.
    """
    try:
        dispatcher = getattr(client.session, "_dispatcher", None)
    except RuntimeError:
        return True  # no session at all
    return bool(getattr(dispatcher, "_closed", False))
