"""servers.toml: the pydantic models, `${VAR}` expansion, discovery and the mcpServers import.

Every error names the file, the field path and the problem, because the person reading it
has to find the line to fix; unknown keys are errors, because a typo must not pass silently.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from mcp_agg.errors import ConfigError
from mcp_agg.security.origin import check_host_list, check_host_pattern, check_origin_pattern
from mcp_agg.security.redact import Redactor, secrets_of

__all__ = [
    "AdminConfig",
    "AuthConfig",
    "BalancerName",
    "BreakerConfig",
    "Config",
    "FanoutConfig",
    "GatewayConfig",
    "RateConfig",
    "RateLimitConfig",
    "ReplicaSpec",
    "RetryConfig",
    "RoleConfig",
    "ServerConfig",
    "TokenConfig",
    "TracingConfig",
    "describe_errors",
    "find_config",
    "load_config",
    "mcp_servers_to_toml",
]

CONFIG_ENV = "MCP_AGG_CONFIG"
PROFILE_ENV = "MCP_AGG_PROFILE"
DEFAULT_CONFIG = "servers.toml"

BalancerName = Literal["round-robin", "least-connections", "weighted", "random", "p2c-ewma"]

#: Commands that mean "the Python running the gateway": Claude Desktop starts the
#: gateway with a bare PATH from an arbitrary folder, where a plain `python` may be
#: missing or be another interpreter without the backend's dependencies.
_PYTHON_ALIASES = frozenset(
    {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Model):
    """Retry policy for calls that are safe to retry (see DESIGN.md)."""

    attempts: Annotated[int, Field(ge=1, le=20)] = 3
    base_delay: Annotated[float, Field(ge=0)] = 0.1
    max_delay: Annotated[float, Field(ge=0)] = 5.0
    budget_percent: Annotated[float, Field(ge=0, le=100)] = 20
    #: Retries always allowed per second, however few calls there were.
    budget_min_per_second: Annotated[float, Field(ge=0)] = 1.0
    #: Seconds one attempt may take before the next replica is tried (safe tools
    #: only); unset, an attempt may use the whole remaining deadline.
    attempt_timeout: Annotated[float, Field(gt=0)] | None = None


class BreakerConfig(_Model):
    """Circuit breaker thresholds of one replica."""

    failure_threshold: Annotated[int, Field(ge=1)] = 5
    reset_timeout: Annotated[float, Field(gt=0)] = 30
    half_open_calls: Annotated[int, Field(ge=1)] = 1
    #: Also open when this share of the calls in the last `window` seconds failed,
    #: once there were at least `min_calls` of them.
    failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    window: Annotated[float, Field(gt=0)] = 30
    min_calls: Annotated[int, Field(ge=1)] = 10


class TokenConfig(_Model):
    """One static bearer token (`[[gateway.auth.tokens]]`): read it from the environment."""

    token: Annotated[str, Field(min_length=1)]
    client_id: Annotated[str, Field(min_length=1)]
    roles: list[str] = []


class AuthConfig(_Model):
    """`[gateway.auth]`: who may use the HTTP front."""

    type: Literal["bearer", "jwt"]
    tokens: list[TokenConfig] = []
    #: JWT: the expected issuer and audience, and where the signing key comes from.
    issuer: str | None = None
    audience: str | list[str] | None = None
    jwks_uri: Annotated[str, Field(pattern=r"^https?://")] | None = None
    public_key: str | None = None
    #: JWT: the claim that lists the caller's roles, and the one that names it.
    roles_claim: str = "roles"
    client_id_claim: str = "sub"

    @model_validator(mode="after")
    def _check_type(self) -> AuthConfig:
        if self.type == "bearer":
            if not self.tokens:
                raise ValueError('type = "bearer" needs at least one [[gateway.auth.tokens]]')
            if self.jwks_uri or self.public_key or self.issuer or self.audience:
                raise ValueError(
                    '`issuer`, `audience`, `jwks_uri` and `public_key` apply to type = "jwt"'
                )
            seen: set[str] = set()
            for index, token in enumerate(self.tokens):
                if token.token in seen:
                    raise ValueError(f"tokens[{index}] ({token.client_id}): token given twice")
                seen.add(token.token)
        else:
            if self.tokens:
                raise ValueError('`tokens` apply to type = "bearer"')
            if (self.jwks_uri is None) == (self.public_key is None):
                raise ValueError('type = "jwt" needs exactly one of `jwks_uri` and `public_key`')
        return self


class RoleConfig(_Model):
    """`[gateway.roles.NAME]`: glob patterns over exposed names; deny wins over allow."""

    allow: list[str] = []
    deny: list[str] = []


class RateConfig(_Model):
    """A token bucket: `burst` calls at once, refilled at `requests_per_second`."""

    requests_per_second: Annotated[float, Field(gt=0)]
    burst: Annotated[int, Field(ge=1)]


class RateLimitConfig(RateConfig):
    """`[gateway.rate_limit]`, per client identity; `tools` overrides it for the exposed
    names matching a glob pattern (the first pattern that matches, in order)."""

    tools: dict[str, RateConfig] = {}


class TracingConfig(_Model):
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


class AdminConfig(_Model):
    """`[gateway.admin]`: the admin HTTP API (servers' state, register, unregister).

    Off unless present; every request needs `Authorization: Bearer <token>`.
    """

    token: Annotated[str, Field(min_length=16)]


class GatewayConfig(_Model):
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


class ServerConfig(_Model):
    """One `[[servers]]` entry: a backend, or one replica of a backend sharing its `name`.

    `command` alone starts a stdio server; `url` alone connects over HTTP or SSE;
    both start the command and then connect to the url (a local HTTP backend the
    gateway owns, reaped with it).
    """

    name: Annotated[str, Field(min_length=1)]
    id: str | None = None
    command: Annotated[str, Field(min_length=1)] | None = None
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str | None = None
    url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    headers: dict[str, str] = {}
    transport: Literal["http", "sse"] | None = None
    prefix: str | None = None
    weight: Annotated[float, Field(gt=0)] = 1
    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    balancer: BalancerName | None = None
    enabled: bool = True
    timeout: Annotated[float, Field(gt=0)] | None = None
    retry: RetryConfig | None = None
    breaker: BreakerConfig | None = None
    include_tools: list[str] | None = None
    exclude_tools: list[str] = []
    rename_tools: dict[str, str] = {}
    #: Glob patterns over the backend's tool names: safe to repeat after a failure
    #: that may have reached the backend, or never, whatever the tool's annotations say.
    idempotent_tools: list[str] = []
    non_idempotent_tools: list[str] = []
    failover_for: str | None = None
    priority: int = 0
    #: Bulkhead: calls to this server at once (all its replicas); more wait up to
    #: `queue_timeout` seconds for a slot, then are refused.
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    queue_timeout: Annotated[float, Field(ge=0)] = 10

    @model_validator(mode="after")
    def _check_shape(self) -> ServerConfig:
        if self.command is None and self.url is None:
            raise ValueError("needs `command` (stdio) or `url` (HTTP/SSE)")
        if self.transport is not None and self.url is None:
            raise ValueError("`transport` applies only to a server with a `url`")
        if self.headers and self.url is None:
            raise ValueError("`headers` apply only to a server with a `url`")
        if self.command is None and (self.args or self.env or self.cwd):
            raise ValueError("`args`, `env` and `cwd` apply only to a server with a `command`")
        if self.replicas > 1 and (self.command is None or self.url is not None):
            raise ValueError("`replicas` applies only to a stdio server (`command` without `url`)")
        if self.failover_for == self.name:
            raise ValueError("`failover_for` names the server itself")
        return self

    @property
    def kind(self) -> Literal["stdio", "http", "sse"]:
        if self.url is None:
            return "stdio"
        return self.transport or "http"


class FanoutConfig(_Model):
    """One `[[fanout]]`: a tool of the gateway's own that calls several targets at once.

    The targets are exposed tool names (`targets`), or one tool on every replica of
    a server (`group` and `tool`).
    """

    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    targets: list[Annotated[str, Field(min_length=1)]] | None = None
    group: Annotated[str, Field(min_length=1)] | None = None
    tool: Annotated[str, Field(min_length=1)] | None = None
    strategy: Literal["first-success", "all-wait", "majority-vote"] = "all-wait"
    timeout: Annotated[float, Field(gt=0)] = 20

    @model_validator(mode="after")
    def _check_targets(self) -> FanoutConfig:
        if (self.targets is None) == (self.group is None):
            raise ValueError("needs either `targets` or `group` (with `tool`)")
        if self.targets is not None:
            if self.tool is not None:
                raise ValueError("`tool` goes with `group`, not with `targets`")
            if len(self.targets) < 2:
                raise ValueError("`targets` needs at least two tool names")
            if len(set(self.targets)) != len(self.targets):
                raise ValueError("`targets` names a tool twice")
        elif self.tool is None:
            raise ValueError("`group` needs `tool`: the backend tool to call on every replica")
        return self


class Config(_Model):
    """A whole servers.toml."""

    gateway: GatewayConfig = GatewayConfig()
    servers: list[ServerConfig] = []
    fanout: list[FanoutConfig] = []
    #: The file this came from; relative paths in it are relative to its folder.
    _source: Path | None = PrivateAttr(default=None)
    #: The `[profiles.NAME]` applied, if any (a reload applies the same one).
    _profile: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_groups(self) -> Config:
        auth = self.gateway.auth
        for index, token in enumerate(auth.tokens if auth is not None else ()):
            for role in token.roles:
                if role not in self.gateway.roles:
                    raise ValueError(
                        f"gateway.auth.tokens[{index}] ({token.client_id}): role {role!r} "
                        "is not defined in [gateway.roles]"
                    )
        names = {s.name for s in self.servers}
        for index, server in enumerate(self.servers):
            if server.failover_for is not None and server.failover_for not in names:
                raise ValueError(
                    f"servers[{index}] ({server.name}): failover_for = "
                    f"{server.failover_for!r} names no server"
                )
        for name in names:
            members = [s for s in self.servers if s.name == name]
            prefixes = {_effective_prefix(s) for s in members}
            if len(prefixes) > 1:
                raise ValueError(f"replicas of {name!r} disagree on `prefix`: {sorted(prefixes)}")
            for key in ("failover_for", "priority", "balancer", "max_concurrent", "queue_timeout"):
                if len({repr(getattr(s, key)) for s in members}) > 1:
                    raise ValueError(f"replicas of {name!r} disagree on `{key}`")
        fanouts: set[str] = set()
        for index, fanout in enumerate(self.fanout):
            where = f"fanout[{index}] ({fanout.name})"
            if fanout.name in fanouts:
                raise ValueError(f"{where}: two [[fanout]] tools are named {fanout.name!r}")
            fanouts.add(fanout.name)
            if fanout.group is not None and fanout.group not in names:
                raise ValueError(f"{where}: group = {fanout.group!r} names no server")
        seen: dict[str, str] = {}
        for spec in self.replica_specs():
            if spec.id in seen:
                raise ValueError(f"two replicas have the id {spec.id!r}")
            seen[spec.id] = spec.group
        return self

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def profile(self) -> str | None:
        return self._profile

    @property
    def base_dir(self) -> Path:
        return self._source.parent if self._source is not None else Path.cwd()

    def replica_specs(self) -> list[ReplicaSpec]:
        """Every replica to run, enabled ones only, with ids and resolved launch details."""
        specs: list[ReplicaSpec] = []
        counts: dict[str, int] = {}
        for server in self.servers:
            if not server.enabled:
                continue
            for copy in range(server.replicas):
                counts[server.name] = counts.get(server.name, 0) + 1
                number = counts[server.name]
                if server.id is None:
                    replica_id = f"{server.name}-{number}"
                elif server.replicas > 1:
                    replica_id = f"{server.id}-{copy + 1}"
                else:
                    replica_id = server.id
                specs.append(
                    ReplicaSpec(
                        group=server.name, id=replica_id, server=server, base_dir=self.base_dir
                    )
                )
        return specs

    def retry_for(self, server: ServerConfig) -> RetryConfig:
        """The gateway's retry settings, with the keys the server sets replaced."""
        if server.retry is None:
            return self.gateway.retry
        return self.gateway.retry.model_copy(update=server.retry.model_dump(exclude_unset=True))

    def breaker_for(self, server: ServerConfig) -> BreakerConfig:
        if server.breaker is None:
            return self.gateway.breaker
        return self.gateway.breaker.model_copy(update=server.breaker.model_dump(exclude_unset=True))

    def timeout_for(self, server: ServerConfig) -> float:
        return server.timeout or self.gateway.request_timeout


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """One replica to run: a server entry, its group and its id, and how to launch it."""

    group: str
    id: str
    server: ServerConfig
    base_dir: Path

    @property
    def prefix(self) -> str:
        return _effective_prefix(self.server)

    @property
    def command(self) -> str | None:
        command = self.server.command
        if command is None:
            return None
        return sys.executable if command in _PYTHON_ALIASES else command

    @property
    def cwd(self) -> Path:
        if self.server.cwd is None:
            return self.base_dir
        return (self.base_dir / self.server.cwd).resolve()


def _effective_prefix(server: ServerConfig) -> str:
    return server.name if server.prefix is None else server.prefix


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def find_config(explicit: Path | None = None) -> Path:
    """`--config`, then `$MCP_AGG_CONFIG`, then `./servers.toml`."""
    if explicit is not None:
        candidate, origin = explicit, "--config"
    elif os.environ.get(CONFIG_ENV):
        candidate, origin = Path(os.environ[CONFIG_ENV]), CONFIG_ENV
    else:
        candidate, origin = Path(DEFAULT_CONFIG), "the current folder"
    if not candidate.is_file():
        raise ConfigError(f"no config file (from {origin})", source=candidate)
    return candidate.resolve()


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, profile: str | None = None
) -> Config:
    """Read, expand and validate a servers.toml or mcpServers JSON file.

    `profile` (else `$MCP_AGG_PROFILE`) names the `[profiles.NAME]` table applied.
    """
    environ = os.environ if environ is None else environ
    profile = profile or environ.get(PROFILE_ENV) or None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=path) from None
    if path.suffix.lower() == ".json":
        raw = mcp_servers_to_raw(_parse_json(text, path), path)
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", source=path) from exc
        except RecursionError:
            raise ConfigError("invalid TOML: nested too deeply", source=path) from None
    return config_from_raw(raw, path, environ, profile=profile)


def config_from_raw(
    raw: dict[str, Any],
    source: Path | None,
    environ: Mapping[str, str],
    *,
    profile: str | None = None,
) -> Config:
    raw = apply_profile(raw, profile, source)
    try:
        expanded = _expand(raw, "", environ, source)
    except RecursionError:
        raise ConfigError("a value is nested too deeply", source=source) from None
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        # No secret (a header, env value or token) may be echoed by an error message.
        hide = Redactor(secrets_of(expanded))
        raise ConfigError(hide(describe_errors(exc, expanded)), source=source) from None
    config._source = source.resolve() if source is not None else None
    config._profile = profile
    return config


def apply_profile(raw: dict[str, Any], profile: str | None, source: Path | None) -> dict[str, Any]:
    """The document with `[profiles.NAME]` merged in, and the `profiles` table removed.

    A profile's `gateway` table is merged into `[gateway]` (tables key by key, other
    values replaced); its `servers.SERVER` tables into every `[[servers]]` entry named
    SERVER (all its replicas). Every profile is checked, chosen or not, so a typo in
    one is found before the day it is used; `${VAR}`s are expanded after merging, so a
    profile not chosen may name variables that are not set.
    """
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(
            "must be a table of [profiles.NAME] tables", source=source, loc="profiles"
        )
    servers = raw.get("servers", [])
    names = (
        {s["name"] for s in servers if isinstance(s, dict) and isinstance(s.get("name"), str)}
        if isinstance(servers, list)
        else set()
    )
    for name, table in profiles.items():
        loc = f"profiles.{name}"
        if not isinstance(table, dict):
            raise ConfigError("must be a table", source=source, loc=loc)
        for key, value in table.items():
            if key not in ("gateway", "servers"):
                raise ConfigError(
                    "unknown key (a profile overrides `gateway` and `servers`)",
                    source=source,
                    loc=f"{loc}.{key}",
                )
            if not isinstance(value, dict):
                raise ConfigError("must be a table", source=source, loc=f"{loc}.{key}")
        for server, fields in table.get("servers", {}).items():
            where = f"{loc}.servers.{server}"
            if server not in names:
                raise ConfigError("names no [[servers]] entry", source=source, loc=where)
            if not isinstance(fields, dict):
                raise ConfigError(
                    "must be a table of the server's fields", source=source, loc=where
                )
            if "name" in fields:
                raise ConfigError(
                    "a profile cannot rename a server", source=source, loc=f"{where}.name"
                )
    out = {k: v for k, v in raw.items() if k != "profiles"}
    if profile is None:
        return out
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none is defined"
        raise ConfigError(f"profile {profile!r} is not defined ({known})", source=source)
    chosen = profiles[profile]
    if "gateway" in chosen:
        gateway = raw.get("gateway", {})
        out["gateway"] = _merged(gateway if isinstance(gateway, dict) else {}, chosen["gateway"])
    overrides = chosen.get("servers", {})
    if overrides and isinstance(servers, list):
        out["servers"] = [
            _merged(s, overrides[s["name"]])
            if isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"] in overrides
            else s
            for s in servers
        ]
    return out


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override`'s keys: tables merged key by key, other values replaced."""
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = _merged(current, value)
        else:
            out[key] = value
    return out


_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


def _expand(value: Any, loc: str, environ: Mapping[str, str], source: Path | None) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string; `$$` is a literal `$`."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = environ.get(name)
            if value is not None and (value or default is None):
                return value
            if default is not None:
                return default  # as in a POSIX shell: unset or empty
            raise ConfigError(
                f"environment variable ${{{name}}} is not set", source=source, loc=loc
            )

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: _expand(v, f"{loc}.{k}" if loc else k, environ, source) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand(v, f"{loc}[{i}]", environ, source) for i, v in enumerate(value)]
    return value


def describe_errors(exc: ValidationError, raw: dict[str, Any]) -> str:
    """One line per problem: `servers[1] (notes).url: must start with http:// or https://`."""
    lines = []
    for error in exc.errors():
        loc = _format_loc(error["loc"], raw)
        kind = error["type"]
        if kind == "extra_forbidden":
            problem = "unknown key"
        elif kind == "missing":
            problem = "required key is missing"
        elif kind == "string_pattern_mismatch" and error["loc"][-1] == "url":
            problem = f"must start with http:// or https:// (got {error['input']!r})"
        else:
            problem = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{loc}: {problem}" if loc else problem)
    return "\n  ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines)


def _format_loc(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            if index == 1 and loc[0] in ("servers", "fanout"):
                servers = raw.get(loc[0])
                if isinstance(servers, list) and part < len(servers):
                    entry = servers[part]
                    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                        parts[-1] += f" ({entry['name']})"
        elif isinstance(part, str) and not part.startswith(("function-", "literal[")):
            parts.append(part)
    return ".".join(parts)


# ---------------------------------------------------------------------------
# Claude Desktop style {"mcpServers": {...}}
# ---------------------------------------------------------------------------

_JSON_TRANSPORTS = {
    "stdio": None,
    "http": "http",
    "streamable-http": "http",
    "streamablehttp": "http",
    "streamable_http": "http",
    "sse": "sse",
}
_JSON_KEYS = {"command", "args", "env", "cwd", "url", "headers", "type", "transport", "disabled"}


def _parse_json(text: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc}", source=path) from exc
    except RecursionError:
        raise ConfigError("invalid JSON: nested too deeply", source=path) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", source=path)
    return data


def mcp_servers_to_raw(data: dict[str, Any], source: Path | None) -> dict[str, Any]:
    """Turn `{"mcpServers": {name: {...}}}` into the servers.toml structure."""
    servers = data.get("mcpServers")
    if not isinstance(servers, dict):
        raise ConfigError('expected an object with an "mcpServers" object', source=source)
    unknown_top = set(data) - {"mcpServers"}
    if unknown_top:
        raise ConfigError(f"unknown key {sorted(unknown_top)[0]!r}", source=source)
    out: list[dict[str, Any]] = []
    for name, entry in servers.items():
        loc = f"mcpServers.{name}"
        if not isinstance(entry, dict):
            raise ConfigError("expected an object", source=source, loc=loc)
        for key in entry:
            if key not in _JSON_KEYS:
                raise ConfigError("unknown key", source=source, loc=f"{loc}.{key}")
        server: dict[str, Any] = {"name": name}
        for key in ("command", "args", "env", "cwd", "url", "headers"):
            if key in entry:
                server[key] = entry[key]
        kind = entry.get("type", entry.get("transport"))
        if kind is not None:
            normalized = str(kind).lower()
            if normalized not in _JSON_TRANSPORTS:
                raise ConfigError(
                    f"unknown transport {kind!r} (stdio, http, streamable-http or sse)",
                    source=source,
                    loc=f"{loc}.type",
                )
            transport = _JSON_TRANSPORTS[normalized]
            if transport is not None and "url" in entry:
                server["transport"] = transport
        if entry.get("disabled") is True:
            server["enabled"] = False
        out.append(server)
    return {"servers": out}


def mcp_servers_to_toml(path: Path) -> str:
    """The servers.toml equivalent of an mcpServers JSON file, validated first."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=path) from None
    raw = mcp_servers_to_raw(_parse_json(text, path), path)
    # Validate without expanding ${VAR}: the output keeps them as written. A url that is
    # only a variable cannot be checked until it is expanded, so it stands in as valid.
    checkable = {
        "servers": [
            {**s, "url": "http://variable.invalid"}
            if isinstance(s.get("url"), str) and s["url"].startswith("${")
            else s
            for s in raw["servers"]
        ]
    }
    config_from_raw(checkable, path, _KeepVariables())
    return tomli_w.dumps({"gateway": {"name": "mcp-agg"}, **raw})


class _KeepVariables(Mapping[str, str]):
    """An environment in which every variable is set to its own `${NAME}` reference."""

    def __getitem__(self, key: str) -> str:
        return "${" + key + "}"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0
