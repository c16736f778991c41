"""What the parts around the gateway see of it: one small `Protocol` per need.

The admin API, the operations routes, the metrics, the gateway's own tools, fan-outs,
search mode and reloads from the config file are each handed the gateway (or its call
pipeline, or its reconfigurer), but each reads only a few of its attributes. Naming
those here keeps each seam as narrow as its use, and keeps the modules outside `core`
from importing `Gateway` itself (and the import circle that came with it).

Only types live here: nothing is imported at run time but `typing`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from mcp_agg.backend.upstream import Upstream
    from mcp_agg.components.forwarding import CallTarget
    from mcp_agg.config import Config, ServerConfig
    from mcp_agg.core.announce import Announcer
    from mcp_agg.core.cache import Caching
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.core.peer import PerClient, RelayRule
    from mcp_agg.core.reload import ReloadReport
    from mcp_agg.observability.metrics import GatewayMetrics
    from mcp_agg.resilience.group import ReplicaGroup
    from mcp_agg.security.access import Visibility
    from mcp_agg.security.pinning import Pinner
    from mcp_agg.store.base import Store

__all__ = [
    "AdminHost",
    "CallPath",
    "CatalogView",
    "ClientFront",
    "ClientPeer",
    "ConfigView",
    "ConsoleHost",
    "FanoutHost",
    "MetricsSource",
    "OpsHost",
    "Reconfigurable",
    "ReplicaView",
    "ServesCalls",
    "ServesReads",
    "StateView",
]


class ClientPeer(Protocol):
    """A client the gateway can ask or tell at any time, in a call or not: the fixed
    owner of a backend session (`mcp_agg.core.peer`)."""

    async def ask(self, request: Any, result_type: type[Any], what: str) -> Any:
        """The client's answer to a server-to-client request; MCPError if it cannot take
        it (no such capability, no channel) or answers with an error."""
        ...

    async def log(self, params: Any) -> None:
        """Tell the client a backend's log message, if its log level lets it through."""
        ...


class ClientFront(Protocol):
    """What a replica asks of the front about the clients it serves (`core/sessions.py`)."""

    def relay_rule(self) -> RelayRule:
        """Who the replica's own session may ask or tell beside a call's client."""
        ...

    def per_client(self) -> PerClient | None:
        """The current request's client, when it gets a backend session of its own (a
        per-client server on the HTTP front); None: the replica's own session serves it."""
        ...


class ConfigView(Protocol):
    """The running config (a reload replaces it: read it each time)."""

    @property
    def config(self) -> Config: ...


class CatalogView(Protocol):
    """The catalog clients are served now (rebuilt as backends come and go)."""

    @property
    def catalog(self) -> Catalog: ...


class ReplicaView(CatalogView, Protocol):
    """Every server of the running config: its group, its replicas, and the catalog."""

    @property
    def groups(self) -> Mapping[str, ReplicaGroup]: ...

    @property
    def upstreams(self) -> Sequence[Upstream]: ...

    @property
    def cache(self) -> Caching: ...


class MetricsSource(ConfigView, Protocol):
    """The gateway's metrics, kept from the first time someone can read them."""

    def collect_metrics(self) -> GatewayMetrics | None: ...


class StateView(ReplicaView, MetricsSource, Protocol):
    """What the gateway's own tools report: replicas, catalog and metrics."""


class Reconfigurable(ConfigView, Protocol):
    """A running config that can change: a reload, a server registered at runtime."""

    @property
    def registered(self) -> Mapping[str, tuple[ServerConfig, ...]]: ...

    def config_names(self) -> set[str]: ...

    async def reconfigure(self, new: Config) -> ReloadReport: ...

    async def register(self, server: ServerConfig) -> ReloadReport: ...

    async def unregister(self, name: str) -> ReloadReport: ...


class AdminHost(ReplicaView, ConfigView, Protocol):
    """What the admin API shows and changes."""

    @property
    def reconfigurer(self) -> Reconfigurable: ...

    @property
    def store(self) -> Store: ...


class ConsoleHost(AdminHost, MetricsSource, Protocol):
    """What the web console (`/ui`) shows and does: the admin API's view, the metrics,
    the call pipeline (its tool runner), the pins and a catalog refresh (approving them)."""

    @property
    def calls(self) -> CallPath: ...

    @property
    def pinner(self) -> Pinner: ...

    @property
    def announcer(self) -> Announcer: ...


class OpsHost(ConsoleHost, Protocol):
    """What the operations routes (`/metrics`, `/admin/...`, `/ui`) are made from."""


class FanoutHost(ConfigView, Protocol):
    """What fan-outs read at each catalog build: `[[fanout]]`, the groups, and what
    the current caller may see."""

    @property
    def groups(self) -> Mapping[str, ReplicaGroup]: ...

    @property
    def visibility(self) -> Visibility: ...


class CallPath(Protocol):
    """The one path of a `tools/call` (`mcp_agg.core.pipeline.CallPipeline`)."""

    def lookup(self, name: str) -> CallTarget | None:
        """The tool the current caller may call under `name`; None: "unknown tool"."""
        ...

    def unknown(self, name: str, arguments: dict[str, Any] | None) -> None:
        """Record a call of a tool the caller cannot see (no backend saw it)."""
        ...

    async def call(
        self,
        tool: CallTarget,
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One call of `tool` (with its request's `_meta`) through every stage, as a
        wire result."""
        ...


@runtime_checkable
class ServesCalls(Protocol):
    """A server that sends every `tools/call` down a call pipeline (the gateway's)."""

    @property
    def calls(self) -> CallPath: ...


@runtime_checkable
class ServesReads(Protocol):
    """A server whose resource reads may be answered from the gateway's response cache."""

    @property
    def cache(self) -> Caching: ...
