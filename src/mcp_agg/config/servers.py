"""The `[[servers]]` entries, and the replicas they describe."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from mcp_agg.config.backendauth import BackendOAuthConfig
from mcp_agg.config.base import BalancerName, StrictModel
from mcp_agg.config.cache import ServerCacheConfig
from mcp_agg.config.gateway import BreakerConfig, RetryConfig

__all__ = ["ReplicaSpec", "ServerConfig", "effective_prefix"]

#: Commands that mean "the Python running the gateway": Claude Desktop starts the
#: gateway with a bare PATH from an arbitrary folder, where a plain `python` may be
#: missing or be another interpreter without the backend's dependencies.
_PYTHON_ALIASES = frozenset(
    {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
)


class ServerConfig(StrictModel):
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
    # Backend sessions per client (docs/sessions.md): one shared by every client of a
    # replica, or one per client session of the HTTP front.
    session: Literal["shared", "per_client"] = "shared"
    #: Seconds a per-client backend session may go without a request before it closes.
    session_idle_timeout: Annotated[float, Field(gt=0)] = 300
    #: Per-client backend sessions open at once, per replica; more are refused.
    max_sessions: Annotated[int, Field(ge=1)] = 64
    #: The MCP era the gateway speaks to this backend: the newest it supports
    #: ("auto"), the handshake era ("legacy"), or 2026-07-28 ("modern").
    protocol: Literal["auto", "legacy", "modern"] = "auto"
    #: Signing in to a remote backend (docs/signing-in.md); HTTP and SSE servers only.
    auth: BackendOAuthConfig | None = None
    #: Tool calls the gateway may answer from its cache (docs/caching.md); `false` (the
    #: default): none.
    cache: ServerCacheConfig | None = None

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_table(cls, value: object) -> object:
        # `false` reads as "no cache" (None); anything else but a table is one error
        # instead of pydantic's two (one per member of the union).
        if value is False or value is None:  # None: a config dumped and read back
            return None
        if not isinstance(value, dict | ServerCacheConfig):
            raise ValueError('expected `false` or a table like { tools = ["get_*"], ttl = 30 }')
        return value

    @model_validator(mode="after")
    def _check_shape(self) -> ServerConfig:
        if self.command is None and self.url is None:
            raise ValueError("needs `command` (stdio) or `url` (HTTP/SSE)")
        if self.transport is not None and self.url is None:
            raise ValueError("`transport` applies only to a server with a `url`")
        if self.headers and self.url is None:
            raise ValueError("`headers` apply only to a server with a `url`")
        if self.auth is not None and self.url is None:
            raise ValueError("`auth` applies only to a server with a `url` (HTTP/SSE)")
        if self.auth is not None and self.auth.per_user:
            if "session" in self.model_fields_set and self.session == "shared":
                raise ValueError(
                    '`auth.per_user = true` with `session = "shared"`: a shared session never '
                    "carries a user's token; remove `session` (per_user means per_client)"
                )
            # One backend session per client, each carrying its user's token.
            object.__setattr__(self, "session", "per_client")
        if self.command is None and (self.args or self.env or self.cwd):
            raise ValueError("`args`, `env` and `cwd` apply only to a server with a `command`")
        if self.replicas > 1 and (self.command is None or self.url is not None):
            raise ValueError("`replicas` applies only to a stdio server (`command` without `url`)")
        if self.protocol == "modern" and self.kind == "sse":
            raise ValueError(
                '`protocol = "modern"` does not apply to an SSE server (handshake era only)'
            )
        if self.failover_for == self.name:
            raise ValueError("`failover_for` names the server itself")
        return self

    @property
    def kind(self) -> Literal["stdio", "http", "sse"]:
        if self.url is None:
            return "stdio"
        return self.transport or "http"


def effective_prefix(server: ServerConfig) -> str:
    """The prefix of the server's exposed names: its `name` unless `prefix` is set."""
    return server.name if server.prefix is None else server.prefix


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """One replica to run: a server entry, its group and its id, and how to launch it."""

    group: str
    id: str
    server: ServerConfig
    base_dir: Path
    #: `[gateway] token_key`: encrypts the server's OAuth tokens kept in a file.
    token_key: str | None = None

    @property
    def prefix(self) -> str:
        return effective_prefix(self.server)

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
