"""Client transports to backends, one module per kind, chosen from a replica's config entry.

- stdio.py: a backend process over stdin/stdout, read with a line reader that stays
  linear (the SDK's is quadratic in a message's length);
- http.py: streamable HTTP with no cap on one server-sent event (FastMCP keeps the SDK's
  1 MiB), and SSE; both with a hook that sees each request;
- options.py: the session every transport opens, which relays results without policing
  them against the backend's output schema.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Protocol

from fastmcp.client.transports import ClientTransport

from mcp_agg.backend.transports.http import (
    RequestHook,
    StreamableHttpRelayTransport,
    http_transport,
)
from mcp_agg.backend.transports.options import RelaySession, relay_options
from mcp_agg.backend.transports.stdio import ExitHook, stdio_transport

if TYPE_CHECKING:
    from mcp_agg.config import ReplicaSpec

__all__ = [
    "ExitHook",
    "RelaySession",
    "RequestHook",
    "StreamableHttpRelayTransport",
    "TransportFactory",
    "make_transport",
    "relay_options",
]


class TransportFactory(Protocol):
    """The seam between a replica's session and the way it reaches its backend.

    A stdio child's stderr goes to `stderr`, and its exit code to `on_exit` when it ends
    by itself; `on_request` sees each request to an HTTP or SSE backend. A factory
    ignores what its kind of backend does not have.
    """

    def __call__(
        self,
        spec: ReplicaSpec,
        stderr: IO[str] | None = None,
        on_request: RequestHook | None = None,
        on_exit: ExitHook | None = None,
    ) -> ClientTransport: ...


def make_transport(
    spec: ReplicaSpec,
    stderr: IO[str] | None = None,
    on_request: RequestHook | None = None,
    on_exit: ExitHook | None = None,
) -> ClientTransport:
    """The transport for one replica, from its config entry (see `TransportFactory`)."""
    factory: TransportFactory = stdio_transport if spec.server.url is None else http_transport
    return factory(spec, stderr, on_request, on_exit)
