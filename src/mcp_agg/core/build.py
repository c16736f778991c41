"""What a config sets up, before anything runs: replicas in their groups, failovers
linked, the pinner and the audit log.

Startup builds every server of the config, a reconfiguration only those it adds or
changes: both through `build_groups`, so a server is set up the same way either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from mcp_agg.backend.upstream import Upstream
from mcp_agg.config import BreakerConfig, Config, ReplicaSpec
from mcp_agg.observability.audit import AuditLog
from mcp_agg.resilience.balancer import make_balancer
from mcp_agg.resilience.breaker import CircuitBreaker
from mcp_agg.resilience.group import ReplicaGroup
from mcp_agg.resilience.health import HealthPolicy
from mcp_agg.security.pinning import Pinner

if TYPE_CHECKING:
    from mcp_agg.core.views import ClientFront

__all__ = ["audit_log_for", "build_groups", "link_failovers", "pinner_for"]


def build_groups(
    config: Config,
    specs: Iterable[ReplicaSpec],
    *,
    on_change: Callable[[Upstream], None],
    on_resource_updated: Callable[[Upstream, str], Awaitable[None]],
    front: ClientFront | None = None,
) -> dict[str, ReplicaGroup]:
    """The replicas of these specs, in their groups, as `config` sets them up (not
    started); each replica tells `on_change` of its changes and `on_resource_updated`
    of its backend's resource updates, and asks `front` about its clients."""
    gateway = config.gateway
    health = HealthPolicy(
        interval=gateway.health_interval,
        unhealthy_threshold=gateway.unhealthy_threshold,
        healthy_threshold=gateway.healthy_threshold,
    )
    members: dict[str, list[Upstream]] = {}
    for spec in specs:
        upstream = Upstream(
            spec,
            connect_timeout=gateway.connect_timeout,
            on_change=on_change,
            on_resource_updated=on_resource_updated,
            breaker=_breaker(config.breaker_for(spec.server)),
            health=health,
            front=front,
        )
        members.setdefault(upstream.group, []).append(upstream)
    return {
        name: ReplicaGroup(
            name,
            replicas,
            prefix=replicas[0].spec.prefix,
            timeout=config.timeout_for(replicas[0].spec.server),
            retry=config.retry_for(replicas[0].spec.server),
            balancer=make_balancer(replicas[0].spec.server.balancer or gateway.balancer),
        )
        for name, replicas in members.items()
    }


def link_failovers(groups: Mapping[str, ReplicaGroup]) -> None:
    """Point every group at its standbys (`failover_for`), in priority order."""
    standbys = sorted(
        (g for g in groups.values() if g.server.failover_for is not None),
        key=lambda g: g.server.priority,
    )
    failovers: dict[str, list[ReplicaGroup]] = {name: [] for name in groups}
    for standby in standbys:
        primary = standby.server.failover_for or ""
        if primary in failovers:
            failovers[primary].append(standby)
    for name, group in groups.items():
        group.failovers = failovers[name]  # a call in flight keeps the list it took


def pinner_for(config: Config) -> Pinner:
    """Tool pinning as `config` sets it (its lock file is read by `Pinner.load`)."""
    return Pinner(config.gateway.pin, config.base_dir / config.gateway.lock_file)


def audit_log_for(config: Config) -> AuditLog | None:
    """The audit log `config` asks for; None (no cost per call) without `audit_log`."""
    settings = config.gateway
    if settings.audit_log is None:
        return None
    return AuditLog(
        config.base_dir / settings.audit_log,
        arguments=settings.audit_arguments,
        auth=settings.auth,
    )


def _breaker(config: BreakerConfig) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=config.failure_threshold,
        reset_timeout=config.reset_timeout,
        half_open_calls=config.half_open_calls,
        failure_rate=config.failure_rate,
        window=config.window,
        min_calls=config.min_calls,
    )
