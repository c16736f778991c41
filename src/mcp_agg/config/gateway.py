"""The `[gateway]` table: the front's settings and the defaults every server inherits."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from mcp_agg.config.base import BalancerName, StrictModel
from mcp_agg.config.cache import CacheLimitsConfig
from mcp_agg.config.security import AdminConfig, AuthConfig, RateLimitConfig, RoleConfig
from mcp_agg.config.store import StoreConfig
from mcp_agg.security.origin import check_host_list, check_host_pattern, check_origin_pattern

__all__ = ["BreakerConfig", "GatewayConfig", "RetryConfig", "TracingConfig", "public_url_of"]


class RetryConfig(StrictModel):
    """Retry policy for calls that are safe to retry (docs/resilience.md, "Retries")."""

    attempts: Annotated[int, Field(ge=1, le=20)] = 3
    base_delay: Annotated[float, Field(ge=0)] = 0.1
    max_delay: Annotated[float, Field(ge=0)] = 5.0
    budget_percent: Annotated[float, Field(ge=0, le=100)] = 20
    #: Retries always allowed per second, however few calls there were.
    budget_min_per_second: Annotated[float, Field(ge=0)] = 1.0
    #: Seconds one attempt may take before the next replica is tried (safe tools
    #: only); unset, an attempt may use the whole remaining deadline.
    attempt_timeout: Annotated[float, Field(gt=0)] | None = None


class BreakerConfig(StrictModel):
    """Circuit breaker thresholds of one replica."""

    failure_threshold: Annotated[int, Field(ge=1)] = 5
    reset_timeout: Annotated[float, Field(gt=0)] = 30
    half_open_calls: Annotated[int, Field(ge=1)] = 1
    #: Also open when this share of the calls in the last `window` seconds failed,
    #: once there were at least `min_calls` of them.
    failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    window: Annotated[float, Field(gt=0)] = 30
    min_calls: Annotated[int, Field(ge=1)] = 10


class TracingConfig(StrictModel):
    """`[gateway.tracing]`: OpenTelemetry spans (needs `pip install mcp-agg[otel]`).

    Present, it turns tracing on: a span per client call and per backend attempt, with
    W3C trace context sent on to HTTP backends. Absent, tracing costs nothing.
    """

    #: `otlp` sends spans over OTLP/HTTP (to `endpoint`, else `$OTEL_EXPORTER_OTLP_*`);
    #: `console` prints them to stderr (for trying it out).
    exporter: Literal["otlp", "console"] = "otlp"
    endpoint: Annotated[str, Field(pattern=r"^https?://")] | None = None
    service_name: Annotated[str, Field(min_length=1)] = "mcp-agg"
    #: Share of client calls traced (parent-based: a caller's sampled trace is kept).
    sample_ratio: Annotated[float, Field(ge=0, le=1)] = 1.0


class GatewayConfig(StrictModel):
    """The `[gateway]` table."""

    name: Annotated[str, Field(min_length=1)] = "mcp-agg"
    separator: str = "_"
    request_timeout: Annotated[float, Field(gt=0)] = 60
    connect_timeout: Annotated[float, Field(gt=0)] = 20
    balancer: BalancerName = "round-robin"
    health_interval: Annotated[float, Field(ge=0)] = 15
    #: Failed probes in a row that eject a replica from balancing.
    unhealthy_threshold: Annotated[int, Field(ge=1)] = 3
    #: Good probes in a row that readmit it.
    healthy_threshold: Annotated[int, Field(ge=1)] = 2
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    #: HTTP front only: the `Host` values accepted (`name`, `name:port`, `name:*` for any
    #: port); replaces the default, which is loopback names on a loopback bind and any
    #: Host otherwise. See `mcp_agg.security.origin` for the whole rule.
    allowed_hosts: (
        Annotated[
            list[Annotated[str, AfterValidator(check_host_pattern)]],
            AfterValidator(check_host_list),
        ]
        | None
    ) = None
    #: HTTP front only: the browser `Origin` values accepted (`https://name`, `...:port`,
    #: `...:*`); replaces the default (loopback origins). A request without Origin passes.
    allowed_origins: list[Annotated[str, AfterValidator(check_origin_pattern)]] | None = None
    #: HTTP front: authentication; without it a non-loopback bind needs `--insecure`.
    auth: AuthConfig | None = None
    roles: dict[str, RoleConfig] = {}
    rate_limit: RateLimitConfig | None = None
    #: Calls whose arguments, or results, are larger (as JSON) are refused.
    max_argument_bytes: Annotated[int, Field(gt=0)] | None = None
    max_result_bytes: Annotated[int, Field(gt=0)] | None = None
    #: Tool pinning against `lock_file` (`mcp-agg lock` writes it): `warn` reports a tool
    #: whose definition changed, `enforce` also withholds it; `off` does neither.
    pin: Literal["off", "warn", "enforce"] = "warn"
    lock_file: Annotated[str, Field(min_length=1)] = "servers.lock"
    #: One JSON line per call is appended here (relative to the config's folder).
    audit_log: Annotated[str, Field(min_length=1)] | None = None
    audit_arguments: bool = False
    #: HTTP front: Prometheus metrics at `/metrics` (`serve --metrics-port` serves them
    #: on a port of their own, for the stdio front too).
    metrics: bool = True
    tracing: TracingConfig | None = None
    admin: AdminConfig | None = None
    #: Adds the gateway's own `gateway_health` and `gateway_metrics` tools.
    expose_gateway_tools: bool = False
    #: `list`: `tools/list` lists every tool. `search`: it lists a search tool and a call
    #: tool instead, as it also does with `list` once more than `max_listed_tools` are
    #: exposed (clients refuse long lists: VS Code stops at 128).
    tool_mode: Literal["list", "search"] = "list"
    #: 0: never switch automatically.
    max_listed_tools: Annotated[int, Field(ge=0)] = 128
    #: The longest message a client may send, in bytes: one stdio line, one HTTP body.
    #: A longer one is refused with a JSON-RPC error and discarded as it arrives, unheld.
    #: A message is held several times over while it is parsed and forwarded (bytes,
    #: text, model, the backend's copy), so this bounds the memory one client can take;
    #: 16 MiB still fits a file of 12 MB sent base64 in an argument.
    max_message_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    #: On SIGTERM or SIGINT (and stdin closing, on stdio): seconds the calls in flight get
    #: to finish while new requests are refused; those still running are then cancelled
    #: with a JSON-RPC error. 25 leaves a Kubernetes pod's default 30 s termination grace
    #: room for the backends to stop.
    shutdown_grace: Annotated[float, Field(ge=0)] = 25
    #: HTTP front: seconds after SIGTERM during which new requests are still served (a
    #: load balancer still sending them has time to notice), before `shutdown_grace`.
    drain_seconds: Annotated[float, Field(ge=0)] = 0
    #: HTTP front: the key that seals handshake-era session ids (at least 32 characters,
    #: from `${MCP_AGG_SESSION_SECRET}`). Replicas sharing it each serve any session; a
    #: forged or altered id is an unknown session. Unset: sessions stay per process.
    session_secret: Annotated[str, Field(min_length=32)] | None = None
    #: The key that encrypts backend OAuth tokens kept in a file (no OS keyring), from
    #: `${MCP_AGG_TOKEN_KEY}`; unset, that file is only protected by its 0600 mode.
    token_key: Annotated[str, Field(min_length=16)] | None = None
    #: The gateway's public URL (scheme, host, optional path; no fragment): where the
    #: sign-in links of `per_user` servers point (`{public_url}/oauth/authorize`).
    #: Unset: the origin of `[gateway.auth] resource`.
    public_url: Annotated[str, Field(pattern=r"^https?://[^#\s]+$")] | None = None
    #: Shared state for a fleet (`[gateway.store]`); absent, everything stays in process.
    store: StoreConfig | None = None
    #: The response cache's bounds (`[gateway.cache]`); servers opt in with `cache`.
    cache: CacheLimitsConfig = CacheLimitsConfig()


def public_url_of(gateway: GatewayConfig) -> str | None:
    """Where browsers reach the gateway: `public_url`, else the origin of
    `[gateway.auth] resource`; None when neither is set. No trailing slash."""
    if gateway.public_url is not None:
        return gateway.public_url.rstrip("/")
    resource = gateway.auth.resource if gateway.auth is not None else None
    if resource is None:
        return None
    parts = urlsplit(resource)
    return f"{parts.scheme}://{parts.netloc}"
