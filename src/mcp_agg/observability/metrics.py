"""Prometheus metrics of one gateway, in a registry of its own.

Two sources keep the cost per call small:
- per call, `GatewayMetrics.observe` is told of every call's `audit.CallRecord` (the
  one classification of outcomes) and moves the call counter and the latency
  histogram; their labelled children are cached, so a call costs two dict hits, one
  increment and one observation;
- per scrape, `StateCollector` reads what the replicas, groups and catalog keep anyway
  (breaker, health, in-flight, latency, request counts, retries, catalog size): no
  cost per call at all.

The registry is the gateway's, not prometheus-client's global one: several gateways
may live in one process (tests, embedding), and each counts its own calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from mcp_agg import __version__
from mcp_agg.observability.audit import CallRecord
from mcp_agg.observability.recent import RecentCalls
from mcp_agg.observability.status import catalog_counts
from mcp_agg.resilience.breaker import BreakerState

if TYPE_CHECKING:
    from mcp_agg.backend.upstream import Upstream
    from mcp_agg.core.cache import ResponseCache
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.core.views import ReplicaView
    from mcp_agg.resilience.group import ReplicaGroup

__all__ = ["BUCKETS", "GatewayMetrics", "StateCollector"]

#: Latency buckets (seconds) for tool calls: from a local tool's few milliseconds to
#: the longest request_timeout worth telling apart.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: Outcomes whose duration is a dispatch's: a refusal or an unknown tool took none.
_TIMED = frozenset({"ok", "tool_error", "error"})
#: The labels of a call of an unknown tool: a client's made-up names make no series.
_UNKNOWN = ("", "", "unknown_tool")


class GatewayMetrics:
    """The registry, the per-call metrics, and the per-scrape collector of a gateway."""

    def __init__(self, gateway: ReplicaView) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "mcp_agg_tool_calls",
            "tools/call requests by exposed tool, server and outcome "
            "(ok, tool_error, error, refused, unknown_tool).",
            ("tool", "server", "outcome"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "mcp_agg_tool_call_duration_seconds",
            "Duration of tools/call requests that were dispatched (outcome ok, tool_error "
            "or error), retries and failover included, by server.",
            ("server",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StateCollector(gateway))
        ProcessCollector(registry=self.registry)
        self._calls: dict[tuple[str, str, str], Counter] = {}
        self._durations: dict[str, Histogram] = {}
        #: The last minutes of calls, for the web console (`observability/recent.py`).
        self.recent = RecentCalls()

    def observe(self, call: CallRecord) -> None:
        """Count one finished call (`audit.CallObserver`)."""
        key = (
            _UNKNOWN
            if call.outcome == "unknown_tool"
            else (
                call.tool,
                call.server or "",
                call.outcome,
            )
        )
        counter = self._calls.get(key)
        if counter is None:
            counter = self._calls[key] = self.calls.labels(*key)
        counter.inc()
        if call.outcome in _TIMED:
            histogram = self._durations.get(key[1])
            if histogram is None:
                histogram = self._durations[key[1]] = self.duration.labels(key[1])
            histogram.observe(call.duration)
        self.recent.observe(call)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the format the `Accept` header asks for, and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class StateCollector:
    """Reads the replicas', groups' and catalog's state when scraped."""

    def __init__(self, gateway: ReplicaView) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gateway = self._gateway
        yield from _replica_metrics(gateway.upstreams)
        yield from _gateway_metrics(gateway.groups, gateway.catalog)
        yield from _cache_metrics(gateway.cache.store)


def _replica_metrics(upstreams: Iterable[Upstream]) -> Iterator[Metric]:
    """Each replica's state: up, healthy, breaker, in flight, latency and counts."""
    replica = ("server", "replica")
    up = GaugeMetricFamily(
        "mcp_agg_replica_up",
        "1 when the replica is connected and healthy (it takes calls while its breaker "
        "admits them), else 0.",
        labels=replica,
    )
    healthy = GaugeMetricFamily(
        "mcp_agg_replica_healthy",
        "1 unless health checks have ejected the replica.",
        labels=replica,
    )
    breaker = GaugeMetricFamily(
        "mcp_agg_replica_breaker_state",
        "1 for the state the replica's circuit breaker is in (closed, open, half_open), "
        "0 for the others.",
        labels=(*replica, "state"),
    )
    opens = CounterMetricFamily(
        "mcp_agg_replica_breaker_opens",
        "Times the replica's circuit breaker opened.",
        labels=replica,
    )
    in_flight = GaugeMetricFamily(
        "mcp_agg_replica_in_flight_requests",
        "Requests sent to the replica and not answered yet.",
        labels=replica,
    )
    latency = GaugeMetricFamily(
        "mcp_agg_replica_latency_seconds",
        "The replica's recent request latency (peak EWMA, what p2c-ewma balances on).",
        labels=replica,
    )
    requests = CounterMetricFamily(
        "mcp_agg_replica_requests",
        "Requests sent to the replica: every attempt of a call, read, prompt or completion.",
        labels=replica,
    )
    failures = CounterMetricFamily(
        "mcp_agg_replica_failures",
        "Requests to the replica that got no answer (connection lost, timeout); a "
        "tool's own error result is an answer.",
        labels=replica,
    )
    connects = CounterMetricFamily(
        "mcp_agg_replica_connects",
        "Sessions the replica established, reconnects included.",
        labels=replica,
    )
    for upstream in upstreams:
        values = (upstream.group, upstream.id)
        up.add_metric(values, float(upstream.available))
        healthy.add_metric(values, float(upstream.health.healthy))
        state = upstream.breaker.state
        for each in BreakerState:
            breaker.add_metric((*values, each.value), float(each is state))
        opens.add_metric(values, float(upstream.breaker.opened))
        stats = upstream.stats
        in_flight.add_metric(values, float(stats.in_flight))
        latency.add_metric(values, upstream.latency)
        requests.add_metric(values, float(stats.calls))
        failures.add_metric(values, float(stats.failures))
        connects.add_metric(values, float(stats.connects))
    yield from (up, healthy, breaker, opens, in_flight, latency, requests, failures, connects)


def _cache_metrics(cache: ResponseCache) -> Iterator[Metric]:
    """The response cache (`mcp_agg.core.cache`): hits, misses, evictions, coalesced
    misses, its size."""
    stats = cache.stats
    for name, help_text, value in (
        ("hits", "Calls and reads answered from the response cache.", stats.hits),
        ("misses", "Cacheable calls and reads the cache could not answer.", stats.misses),
        ("evictions", "Entries pushed out of the cache by its bounds.", stats.evictions),
        ("coalesced", "Cache misses answered by a concurrent call's answer.", stats.coalesced),
    ):
        yield CounterMetricFamily(f"mcp_agg_cache_{name}", help_text, value=float(value))
    yield GaugeMetricFamily("mcp_agg_cache_entries", "Entries in the cache.", value=len(cache))
    yield GaugeMetricFamily("mcp_agg_cache_bytes", "Bytes held by the cache.", value=cache.size)


def _gateway_metrics(groups: Mapping[str, ReplicaGroup], catalog: Catalog) -> Iterator[Metric]:
    """Retries by server, the catalog's size, and the build."""
    retries = CounterMetricFamily(
        "mcp_agg_retries",
        "Attempts beyond a request's first, by server (the group that retried).",
        labels=("server",),
    )
    for name, group in groups.items():
        retries.add_metric((name,), float(group.retries))
    yield retries

    items = GaugeMetricFamily(
        "mcp_agg_catalog_items",
        "What the gateway exposes, by kind (tools, resources, templates, prompts).",
        labels=("kind",),
    )
    for kind, count in catalog_counts(catalog).items():
        items.add_metric((kind,), float(count))
    yield items
    yield InfoMetricFamily("mcp_agg_build", "mcp-agg's version.", value={"version": __version__})
