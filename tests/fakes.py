"""Fakes shared by the unit tests: a clock the test moves, in-process replicas, and a
backend a supervised replica connects to."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mcp_agg.backend.upstream import Listing, ReplicaState, Upstream
from mcp_agg.config import config_from_raw
from mcp_agg.core.gateway import Gateway
from mcp_agg.errors import UpstreamConnectError

#: A tool call's answer on the wire, and a tool's own error.
OK = {"content": [{"type": "text", "text": "3"}]}
TOOL_ERROR = {"content": [{"type": "text", "text": "division by zero"}], "isError": True}


def make_gateway(tmp_path: Path, servers: list[dict[str, Any]], **gateway: Any) -> Gateway:
    """A gateway whose catalog was built once, as at startup (which also starts its
    metrics when `gateway_metrics` is offered)."""
    raw = {"gateway": {"expose_gateway_tools": True, **gateway}, "servers": servers}
    made = Gateway(config_from_raw(raw, tmp_path / "servers.toml", {}))
    made.catalog = made.assemble_catalog(strict=True)
    return made


class FakeClock:
    """A monotonic clock that only moves when told to: call it for the time."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def upstreams(name: str, **server: Any) -> list[Upstream]:
    """The replicas of one stdio server `name` (never started); `server` adds to its
    config entry (replicas, prefix...)."""
    config = config_from_raw({"servers": [{"name": name, "command": "python", **server}]}, None, {})
    return [Upstream(spec, connect_timeout=1) for spec in config.replica_specs()]


def connected(
    replica: Upstream, listing: Listing | None = None, *, session: bool = False
) -> Upstream:
    """`replica` as after its first connect: CONNECTED with `listing` (when given); with
    `session`, a client object too, which is what `available` checks for."""
    if listing is not None:
        replica.listing = listing
    replica.state = ReplicaState.CONNECTED
    replica.stats.connects = 1
    if session:
        replica._client = object()  # type: ignore[assignment]
    return replica


class FakeBackend:
    """What a replica's supervisor (`Upstream.run`) connects to: up or down as the test
    says, counting the attempts; a connection lasts until the replica loses it."""

    def __init__(self, *, up: bool = False) -> None:
        self.up = up
        self.attempts = 0

    def serve(self, replica: Upstream) -> Upstream:
        """`replica`, connecting to this backend instead of its configured one."""

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[Any]:
            self.attempts += 1
            if not self.up:
                raise UpstreamConnectError("connection refused", replica=replica.id)
            yield SimpleNamespace(protocol_version="2025-11-25", server_info=None)

        replica._connected_client = connect  # type: ignore[method-assign]
        return replica
