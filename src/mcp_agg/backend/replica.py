"""What every part of a replica shares: its state, its counters, and the three things any
part may do with them (report a change, record an error, give up the session).

`Upstream` (upstream.py) is assembled from mixins over `ReplicaCore`, as FastMCP
assembles its server from mixins: connecting (connect.py), requests (requests.py) and
health probing (probing.py) all read and move the same state, so they share it rather
than pass it to each other. What keeps state of its own, the relay of a backend's
messages to calling clients (relay.py), is an object the core holds.
"""

from __future__ import annotations

import enum
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import anyio
import mcp_types
from fastmcp import Client

from mcp_agg.backend.clientsessions import ClientSessions
from mcp_agg.backend.listen import ChangeListener
from mcp_agg.backend.listing import Listing
from mcp_agg.backend.process import OutputCapture
from mcp_agg.backend.relay import ClientRelay
from mcp_agg.backend.transports import RequestHook
from mcp_agg.config import ReplicaSpec
from mcp_agg.core.peer import RelayRule
from mcp_agg.errors import UpstreamConnectError
from mcp_agg.resilience.balancer import PeakEwma
from mcp_agg.resilience.breaker import CircuitBreaker
from mcp_agg.resilience.health import HealthPolicy, HealthState

if TYPE_CHECKING:
    from mcp_agg.backend.early import EarlyStarts
    from mcp_agg.core.views import ClientFront

__all__ = ["ReplicaCore", "ReplicaState", "ReplicaStats", "describe", "describe_exit"]

logger = logging.getLogger(__name__)


class ReplicaState(enum.StrEnum):
    REGISTERED = "registered"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"
    STOPPED = "stopped"


@dataclass(slots=True)
class ReplicaStats:
    calls: int = 0
    failures: int = 0
    in_flight: int = 0
    connects: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    connected_at: float | None = None
    protocol_version: str | None = None
    server_name: str | None = None
    #: How the backend's process last ended by itself (stdio backends): its exit code,
    #: or minus the signal that killed it; None while none has.
    exit_code: int | None = None


class ReplicaCore:
    """One backend replica's state, read by every part of `Upstream`."""

    def __init__(
        self,
        spec: ReplicaSpec,
        *,
        connect_timeout: float,
        on_change: Callable[[Self], None] = lambda _: None,
        breaker: CircuitBreaker | None = None,
        health: HealthPolicy | None = None,
        on_resource_updated: Callable[[Self, str], Awaitable[None]] | None = None,
        front: ClientFront | None = None,
    ) -> None:
        self.spec = spec
        self.connect_timeout = connect_timeout
        self.breaker = breaker or CircuitBreaker()
        self.health = HealthState(health or HealthPolicy(interval=0))
        self.ewma = PeakEwma()
        self.state = ReplicaState.REGISTERED
        self.listing = Listing()
        self.stats = ReplicaStats()
        #: Taken out of balancing by an operator (the admin API, the console): no new
        #: call is sent here, calls in flight finish; until re-admitted. Not health's
        #: ejection, which probes undo by themselves, nor the breaker, which half-opens.
        self.drained = False
        self._on_change = on_change
        self._on_resource_updated = on_resource_updated
        #: The front's clients: who this session's relay may ask, and whose requests go
        #: to a session of their own (None: no front, as for `mcp-agg call`).
        self.front = front
        #: Takes what the backend asks or tells to the client it belongs to.
        self._relay = ClientRelay(
            spec.id,
            front.relay_rule if front is not None else RelayRule,
            server=spec.group,
            advise=spec.server.session == "shared",
        )
        #: Per-client sessions (`session = "per_client"` on the HTTP front).
        self.clients = ClientSessions(self)
        #: The log level backends are asked to send at (`logging/setLevel`), if any.
        self.log_level: mcp_types.LoggingLevel | None = None
        #: Backend URIs the gateway holds a subscription for on this replica.
        self.subscriptions: set[str] = set()
        #: A modern-era session's change stream (listen.py); None on the handshake era.
        self.listener: ChangeListener | None = None
        self.output = OutputCapture(spec.id)
        #: The backends `serve` started before its imports: the first session takes
        #: this replica's process from there (None: every session spawns its own).
        self.early_starts: EarlyStarts | None = None
        #: The exit code of this session's backend process, once it ended by itself.
        self._exited: int | None = None
        #: Sees every HTTP request to the backend before it is sent (trace context).
        self.on_http_request: RequestHook | None = None
        self._client: Client[Any] | None = None
        self._lost = anyio.Event()
        self._stopping = False
        #: Set to end a reconnect backoff at once: by `stop()`, or for a call (`expedite`).
        self._wake = anyio.Event()
        #: When a call last cut a reconnect backoff short (monotonic seconds).
        self._expedited_at = -math.inf
        #: Whether a supervisor (`Upstream.run`) looks after the replica.
        self._supervised = False
        #: A backend said a list changed since the listing was last fetched.
        self._refresh_wanted = False
        #: Starts a task that fetches the listing again, while the replica serves and
        #: none is fetching (upstream.py); None otherwise.
        self._start_refresh: Callable[[], None] | None = None
        self._attempt: anyio.CancelScope | None = None
        #: Set once the first connection attempt has succeeded or failed.
        self.first_attempt = anyio.Event()
        #: Set when the supervisor has closed the session and ended.
        self.stopped = anyio.Event()

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def group(self) -> str:
        return self.spec.group

    @property
    def available(self) -> bool:
        """Connected and not ejected by health checks (the breaker is the group's concern)."""
        return (
            self.state is ReplicaState.CONNECTED
            and self._client is not None
            and self.health.healthy
        )

    # What a balancing strategy reads (resilience.balancer.LoadView).
    @property
    def weight(self) -> float:
        return self.spec.server.weight

    @property
    def in_flight(self) -> int:
        return self.stats.in_flight

    @property
    def latency(self) -> float:
        return self.ewma.value

    @property
    def lists_at_once(self) -> bool:
        """Whether its lists are asked for together: across a network, not over a pipe
        (`fetch_listing`)."""
        return self.spec.server.kind != "stdio"

    def __repr__(self) -> str:
        return f"<Upstream {self.id} {self.state}>"

    def _notify(self: Self) -> None:
        try:
            self._on_change(self)
        except Exception:
            logger.exception("change handler failed for %s", self.id)

    def _record_error(self, exc: BaseException) -> None:
        """The error, with how the backend's process ended and the last thing it said:
        usually the reason ("exit code 1; stderr: ModuleNotFoundError: ...")."""
        notes = [] if self._exited is None else [describe_exit(self._exited)]
        said = self.output.last_line
        if said:
            notes.append(f"stderr: {said}")
        self.stats.last_error = describe(exc) + (f" ({'; '.join(notes)})" if notes else "")
        self.stats.last_error_at = time.time()

    async def _resource_updated(self: Self, uri: str) -> None:
        """A backend resource changed (on any of the replica's sessions)."""
        if self._on_resource_updated is not None:
            await self._on_resource_updated(self, uri)

    def _process_exited(self, code: int) -> None:
        """The backend's process ended by itself: the session is lost, and the exit code
        is kept for `status` and the errors of this session."""
        self._exited = self.stats.exit_code = code
        self._lose(UpstreamConnectError("backend process ended", replica=self.id))

    def _request_refresh(self) -> None:
        """The backend said a list changed: fetch the listing again, in a task started
        for it while the replica serves (at once if it does, else as it starts to).
        Changes said while a fetch is under way are fetched once more after it."""
        self._refresh_wanted = True
        start, self._start_refresh = self._start_refresh, None  # one fetching task at most
        if start is not None:
            start()

    def _lose(self, exc: BaseException) -> None:
        """The session is unusable: record why and let the supervisor reconnect."""
        self._record_error(exc)
        if self.state is ReplicaState.CONNECTED:
            self.state = ReplicaState.ERROR
        self._lost.set()


def describe_exit(code: int) -> str:
    """How a process ended, as a person says it: `exit code 3`, `killed by SIGKILL`."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def describe(exc: BaseException) -> str:
    """A one-line reason for status output and logs."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text.splitlines()[0] if text else type(exc).__name__
