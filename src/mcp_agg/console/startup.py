"""Startup feedback: each backend replica's first connection attempt, and a summary.

The gateway tells a `StartupObserver` what happens while it starts (`Gateway.startup`):
`starting` with every replica, `replica_done` as each first attempt ends (connected with
N tools, failed with a reason, timed out), and `ready` with the summary once the
catalog is built. Two observers:
- `LogStartup` (the default): plain log lines on stderr, one per replica and the
  summary; what CI, log files and the stdio front get;
- `mcp_agg.console.live.LiveStartup`: a live rich display on a terminal
  (`serve --transport http` with stderr a TTY): a spinner per replica while it
  connects, its result when it has one, then the summary. Never used on the stdio
  front, and never writes to stdout.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Literal, Protocol

from mcp_agg.backend.upstream import ReplicaState
from mcp_agg.components.search import listed_instead
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from mcp_agg.backend.upstream import Upstream
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.resilience.group import ReplicaGroup

__all__ = [
    "LogStartup",
    "ReplicaOutcome",
    "StartupObserver",
    "StartupSummary",
    "feedback",
]

logger = logging.getLogger(__name__)

Status = Literal["connected", "failed", "timed out"]


@dataclass(frozen=True, slots=True)
class ReplicaOutcome:
    """How one replica's first connection attempt ended."""

    replica: str
    status: Status
    #: Seconds from the start of the gateway's startup.
    seconds: float
    tools: int = 0
    reason: str | None = None

    @classmethod
    def of(cls, upstream: Upstream, seconds: float, connect_timeout: float) -> ReplicaOutcome:
        """The outcome of a replica whose first attempt has ended.

        A failure that came once `connect_timeout` had passed is its deadline firing.
        """
        if upstream.state is ReplicaState.CONNECTED:
            return cls(upstream.id, "connected", seconds, tools=len(upstream.listing.tools))
        status: Status = "timed out" if seconds >= connect_timeout else "failed"
        return cls(upstream.id, status, seconds, reason=upstream.stats.last_error)

    @classmethod
    def unfinished(cls, upstream: Upstream, seconds: float) -> ReplicaOutcome:
        """A replica still connecting when the gateway stopped waiting for it."""
        return cls(upstream.id, "timed out", seconds, reason="still connecting")

    def describe(self) -> str:
        """`connected, 5 tools (0.31s)`, `failed: reason (0.05s)`, `timed out ...`."""
        if self.status == "connected":
            return f"connected, {_count(self.tools, 'tool')} ({self.seconds:.2f}s)"
        reason = f": {redact(self.reason)}" if self.reason else ""
        return f"{self.status} after {self.seconds:.2f}s{reason}"


@dataclass(frozen=True, slots=True)
class StartupSummary:
    """What the gateway started with."""

    servers: int
    #: Servers with no replica connected: their tools are missing for now.
    unavailable: tuple[str, ...]
    replicas: int
    connected: int
    tools: int
    resources: int
    templates: int
    prompts: int
    #: Whether `tools/list` shows the search tools instead of the catalog.
    searching: bool = False

    @classmethod
    def of(cls, groups: Mapping[str, ReplicaGroup], catalog: Catalog) -> StartupSummary:
        replicas = [u for g in groups.values() for u in g.replicas]
        return cls(
            servers=len(groups),
            unavailable=tuple(
                name for name, g in groups.items() if not any(u.available for u in g.replicas)
            ),
            replicas=len(replicas),
            connected=sum(u.available for u in replicas),
            tools=len(catalog.tools) + len(catalog.local) - len(listed_instead(catalog)),
            resources=len(set(map(id, catalog.resources.values()))),
            templates=len(catalog.templates),
            prompts=len(catalog.prompts),
            searching=bool(listed_instead(catalog)),
        )

    def describe(self, seconds: float) -> str:
        """One line: servers, tools (and the rest), time taken, what is missing."""
        up = self.servers - len(self.unavailable)
        servers = f"{up}/{self.servers} servers" if self.unavailable else _count(up, "server")
        if self.replicas != self.servers:
            servers += f" ({self.connected}/{self.replicas} replicas)"
        others = (
            (self.resources, "resource"),
            (self.templates, "template"),
            (self.prompts, "prompt"),
        )
        parts = [servers, _count(self.tools, "tool"), *(_count(n, w) for n, w in others if n)]
        line = f"ready in {seconds:.2f}s: {', '.join(parts)}"
        if self.searching:
            line += "; tools/list shows the search tools (search mode)"
        if self.unavailable:
            line += f"; unavailable: {', '.join(self.unavailable)} (retrying in the background)"
        return line


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class StartupObserver(Protocol):
    """Told by the gateway what happens while it starts."""

    def starting(self, replicas: Sequence[str]) -> None:
        """The replicas (ids) are connecting."""

    def replica_done(self, outcome: ReplicaOutcome) -> None:
        """One replica's first attempt has ended (or the gateway stopped waiting)."""

    def ready(self, summary: StartupSummary) -> None:
        """The catalog is built: the gateway serves from now on."""


class LogStartup:
    """Startup as plain log lines: one per replica, and the summary."""

    def __init__(self) -> None:
        self._began = time.monotonic()

    def starting(self, replicas: Sequence[str]) -> None:
        self._began = time.monotonic()
        logger.debug("connecting %s: %s", _count(len(replicas), "replica"), ", ".join(replicas))

    def replica_done(self, outcome: ReplicaOutcome) -> None:
        if outcome.status == "connected":
            logger.info("backend %s: %s", outcome.replica, outcome.describe())
        else:
            logger.error(
                "backend %s: %s; retrying in the background", outcome.replica, outcome.describe()
            )

    def ready(self, summary: StartupSummary) -> None:
        logger.info("%s", summary.describe(time.monotonic() - self._began))


@contextmanager
def feedback(transport: str, stream: IO[str] | None = None) -> Iterator[StartupObserver]:
    """The observer for `serve`: a live display for the HTTP front on a terminal, plain
    log lines otherwise (on the stdio front stderr may be a terminal too, but one shared
    with the client that started the gateway). A display still running on exit (the
    startup failed) is stopped."""
    stream = stream if stream is not None else sys.stderr
    if transport == "http" and stream.isatty():
        # rich only for a terminal: it is a megabyte of memory the gateway needs only here.
        from rich.console import Console

        from mcp_agg.console.live import LiveStartup

        console = Console(file=stream)
        if console.is_terminal and not console.is_dumb_terminal:
            display = LiveStartup(console)
            try:
                yield display
            finally:
                display.close()
            return
    yield LogStartup()
