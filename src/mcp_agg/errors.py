"""The exception tree of mcp-agg and the one place where failures are classified.

```
GatewayError
├── ConfigError                 servers.toml / mcpServers JSON is invalid (exit code 2)
├── CatalogError
│   └── NameCollisionError      two backend components would get one exposed name
├── ReloadError                 a registration or unregistration conflicts with the running config
├── StoreUnavailable            the shared store ([gateway.store]) did not answer in time
├── UpstreamError               a backend could not serve a request
│   ├── UpstreamUnavailable     no replica could take the request; nothing was sent
│   ├── UpstreamConnectError    connecting or initializing the backend failed
│   ├── UpstreamSessionExpired  the backend refused the request: it no longer knows the session
│   └── UpstreamRequestError    the request was sent and the exchange failed
│       └── UpstreamTimeout     the request was sent and no answer came in time
└── RefusedError                the gateway itself declined a call (never a backend's fault)
    ├── RateLimited             the caller's rate limit is spent for now
    ├── LimitUnchecked          the store is unreachable and `store_failure = "closed"`
    ├── BulkheadFull            the server's `max_concurrent` calls stayed busy
    ├── SessionsFull            a replica already has `max_sessions` per-client sessions
    └── TooLarge                arguments or result over `max_argument_bytes`/`max_result_bytes`
```

A tool that ran and failed is *not* an exception here: its `CallToolResult` with
`isError: true` is a result, relayed to the client unchanged.
"""

from __future__ import annotations

import enum
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    import httpx2
    from mcp.shared.exceptions import MCPError

__all__ = [
    "BulkheadFull",
    "CatalogError",
    "ConfigError",
    "FailureKind",
    "GatewayError",
    "LimitUnchecked",
    "NameCollisionError",
    "RateLimited",
    "RefusedError",
    "ReloadError",
    "SessionsFull",
    "StoreUnavailable",
    "TooLarge",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamRequestError",
    "UpstreamSessionExpired",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "classify",
    "connection_lost",
    "counts_against_replica",
    "may_have_run",
]


class GatewayError(Exception):
    """Base of every error mcp-agg raises on purpose."""

    @property
    def logged(self) -> str:
        """The error as logs and the audit log show it: its message, unless that holds
        something for its caller's eyes only (a sign-in link)."""
        return str(self)


class ConfigError(GatewayError):
    """The configuration is invalid.

    The message always names the file and, where there is one, the field path,
    so a person can go straight to the line to fix.
    """

    def __init__(self, message: str, *, source: Path | str | None = None, loc: str = "") -> None:
        self.source = str(source) if source is not None else None
        self.loc = loc
        self.problem = message
        where = ": ".join(part for part in (self.source, loc) if part)
        super().__init__(f"{where}: {message}" if where else message)


class CatalogError(GatewayError):
    """The merged catalog cannot be built."""


class NameCollisionError(CatalogError):
    """Two different backend components map to one exposed name."""


class ReloadError(GatewayError):
    """A change to the running config was not applied: a server registered at runtime
    whose name is taken, one to unregister that was never registered, or a gateway
    that is not running (yet, or any more)."""


class StoreUnavailable(GatewayError):
    """The shared store could not be reached, or did not answer within its timeout."""


class UpstreamError(GatewayError):
    """A backend replica could not serve a request."""

    def __init__(self, message: str, *, replica: str | None = None) -> None:
        self.replica = replica
        super().__init__(message)


class UpstreamUnavailable(UpstreamError):
    """No replica could take the request: nothing reached a backend."""


class UpstreamConnectError(UpstreamError):
    """Starting, connecting to or initializing a backend failed."""


class UpstreamSessionExpired(UpstreamError):
    """The backend refused the request because it no longer knows the replica's session
    (it restarted, or expired the session): the request never reached a tool, so it may be
    sent again on a new session, whatever the tool."""


class UpstreamRequestError(UpstreamError):
    """The request was sent to a backend and the exchange failed."""


class UpstreamTimeout(UpstreamRequestError):
    """The request was sent and no answer came before the deadline."""


class RefusedError(GatewayError):
    """The gateway declined a call by its own rules; no backend saw it (or its result
    was withheld). Never retried, never counted against a replica's breaker or health."""


class RateLimited(RefusedError):
    """The caller's token bucket is empty."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class LimitUnchecked(RefusedError):
    """The caller's rate limit could not be checked: the shared store is unreachable,
    and `store_failure = "closed"` refuses what it cannot check."""


class BulkheadFull(RefusedError):
    """Every one of a server's `max_concurrent` slots stayed busy for `queue_timeout`."""


class SessionsFull(RefusedError):
    """A replica already has `max_sessions` per-client sessions open for other clients."""


class TooLarge(RefusedError):
    """A call's arguments or its result are over the configured size limit."""


class FailureKind(enum.Enum):
    """How a failed backend call is to be treated (docs/resilience.md, "Failure classification")."""

    #: Nothing was sent: safe to try another replica, counts against the replica
    #: only when connecting failed.
    NOT_SENT = "not_sent"
    #: The backend answered with a protocol error (invalid params, method not
    #: found): the request itself is wrong, never retried, the replica is fine.
    PROTOCOL = "protocol"
    #: The request was sent and the connection broke or timed out: retried only
    #: for tools that are safe to repeat; counts against the replica.
    BROKEN = "broken"
    #: The backend refused the request for a session it no longer knows (HTTP 404, or
    #: the TypeScript SDK's 400): nothing ran; re-initialize, then send it again; not the
    #: replica's fault.
    SESSION_EXPIRED = "session_expired"


# JSON-RPC codes: -32000 connection closed and -32001 request timeout are what the
# mcp SDK uses for transport failures; the -326xx range is the peer's own answer.
_CONNECTION_CLOSED = -32000
_REQUEST_TIMEOUT = -32001
_INTERNAL_ERROR = -32603


@functools.cache
def _sdk() -> tuple[type[MCPError], type[httpx2.HTTPError], tuple[type[BaseException], ...]]:
    """The SDK's error, httpx2's, and the failures to connect (nothing was sent, and the
    replica is at fault).

    Imported on the first failure, not with this module: `mcp` imports its whole client
    and server, which `mcp-agg check` and `--help` do not need (docs/benchmarks.md,
    "Startup and import time").
    """
    import httpx2
    from mcp.shared.exceptions import MCPError

    connect = (UpstreamConnectError, httpx2.ConnectError, httpx2.ConnectTimeout)
    return MCPError, httpx2.HTTPError, (*connect, ConnectionRefusedError)


def classify(exc: BaseException) -> FailureKind:
    """Classify a failure of one backend request.

    This is the only place that decides what a failure means; the retry policy,
    the breaker and health all read its answer.
    """
    if isinstance(exc, RefusedError):
        # Decided here by the gateway's own rules: like a backend's protocol error it
        # is final for this call and says nothing against any replica.
        return FailureKind.PROTOCOL
    if isinstance(exc, UpstreamUnavailable | UpstreamConnectError):
        return FailureKind.NOT_SENT
    if isinstance(exc, UpstreamSessionExpired):
        return FailureKind.SESSION_EXPIRED
    if isinstance(exc, UpstreamRequestError):
        return FailureKind.BROKEN
    sdk_error, http_error, connect_errors = _sdk()
    if isinstance(exc, sdk_error):
        code = exc.error.code
        text = exc.error.message.lower()
        if "session not found" in text or "session terminated" in text:
            return FailureKind.SESSION_EXPIRED
        if code in (_CONNECTION_CLOSED, _REQUEST_TIMEOUT):
            return FailureKind.BROKEN
        if code == _INTERNAL_ERROR and ("connect" in text or "http" in text):
            # mcp 2.x reports transport-level HTTP failures (401, 5xx) as -32603.
            return FailureKind.BROKEN
        return FailureKind.PROTOCOL
    if isinstance(exc, connect_errors):
        return FailureKind.NOT_SENT  # no connection, so no request
    if isinstance(
        exc,
        TimeoutError
        | http_error
        | anyio.ClosedResourceError
        | anyio.BrokenResourceError
        | anyio.EndOfStream
        | ConnectionError
        | OSError,
    ):
        return FailureKind.BROKEN
    if isinstance(exc, RuntimeError) and "not connected" in str(exc).lower():
        return FailureKind.NOT_SENT
    return FailureKind.BROKEN


def connection_lost(exc: BaseException) -> bool:
    """Whether a failure means the replica's session is gone and must be rebuilt.

    A request timeout or a protocol error leaves the session usable; a closed
    connection, a dead process or an expired HTTP session does not.
    """
    if classify(exc) is FailureKind.SESSION_EXPIRED:
        return True
    sdk_error = _sdk()[0]
    if isinstance(exc, sdk_error):
        return exc.error.code == _CONNECTION_CLOSED
    if isinstance(exc, UpstreamError | TimeoutError):
        return False
    return classify(exc) in (FailureKind.BROKEN, FailureKind.NOT_SENT)


def counts_against_replica(exc: BaseException) -> bool:
    """Whether a failure feeds the replica's circuit breaker.

    The replica failed us: the exchange broke or timed out after sending, or
    connecting failed. A backend's own answer (an error result, invalid params),
    an expired session, and anything decided locally (no replica free, breaker
    open, rate limit) say nothing against the replica.
    """
    kind = classify(exc)
    if kind is FailureKind.BROKEN:
        return True
    return kind is FailureKind.NOT_SENT and isinstance(exc, _sdk()[2])


def may_have_run(exc: BaseException) -> bool:
    """Whether the failed request may have reached a tool, so that sending it again could
    run it twice: not when nothing was sent, nor when the backend refused it for its session."""
    return classify(exc) not in (FailureKind.NOT_SENT, FailureKind.SESSION_EXPIRED)
