"""`Config`: a whole servers.toml, and the checks that span its entries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import PrivateAttr, model_validator

from mcp_agg.config.base import StrictModel
from mcp_agg.config.fanout import FanoutConfig
from mcp_agg.config.gateway import BreakerConfig, GatewayConfig, RetryConfig, public_url_of
from mcp_agg.config.servers import ReplicaSpec, ServerConfig, effective_prefix

__all__ = ["Config"]

#: Keys every replica of a server must agree on: they describe the group, not a replica.
_GROUP_KEYS = (
    "failover_for",
    "priority",
    "balancer",
    "max_concurrent",
    "queue_timeout",
    "cache",
)


class Config(StrictModel):
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
        _check_token_roles(self.gateway)
        _check_per_user(self.gateway, self.servers)
        names = {s.name for s in self.servers}
        _check_failovers(self.servers, names)
        _check_replicas_agree(self.servers, names)
        _check_fanouts(self.fanout, names)
        _check_replica_ids(self.replica_specs())
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
                        group=server.name,
                        id=replica_id,
                        server=server,
                        base_dir=self.base_dir,
                        token_key=self.gateway.token_key,
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


def _check_token_roles(gateway: GatewayConfig) -> None:
    auth = gateway.auth
    for index, token in enumerate(auth.tokens if auth is not None else ()):
        for role in token.roles:
            if role not in gateway.roles:
                raise ValueError(
                    f"gateway.auth.tokens[{index}] ({token.client_id}): role {role!r} "
                    "is not defined in [gateway.roles]"
                )


def _check_per_user(gateway: GatewayConfig, servers: Sequence[ServerConfig]) -> None:
    """A `per_user` server needs callers with an identity, a key for their tokens, and a
    URL their browsers reach the sign-in at."""
    for index, server in enumerate(servers):
        if server.auth is None or not server.auth.per_user:
            continue
        where = f"servers[{index}] ({server.name}).auth.per_user"
        if gateway.auth is None:
            raise ValueError(
                f"{where}: needs [gateway.auth] (callers without a token have no identity)"
            )
        if gateway.token_key is None:
            raise ValueError(
                f"{where}: needs [gateway] token_key (it encrypts every user's tokens)"
            )
        if public_url_of(gateway) is None:
            raise ValueError(
                f"{where}: needs [gateway] public_url (where sign-in links point), "
                "or [gateway.auth] resource"
            )


def _check_failovers(servers: Sequence[ServerConfig], names: set[str]) -> None:
    for index, server in enumerate(servers):
        if server.failover_for is not None and server.failover_for not in names:
            raise ValueError(
                f"servers[{index}] ({server.name}): failover_for = "
                f"{server.failover_for!r} names no server"
            )


def _check_replicas_agree(servers: Sequence[ServerConfig], names: set[str]) -> None:
    for name in names:
        members = [s for s in servers if s.name == name]
        prefixes = {effective_prefix(s) for s in members}
        if len(prefixes) > 1:
            raise ValueError(f"replicas of {name!r} disagree on `prefix`: {sorted(prefixes)}")
        for key in _GROUP_KEYS:
            if len({repr(getattr(s, key)) for s in members}) > 1:
                raise ValueError(f"replicas of {name!r} disagree on `{key}`")


def _check_fanouts(fanouts: Sequence[FanoutConfig], names: set[str]) -> None:
    seen: set[str] = set()
    for index, fanout in enumerate(fanouts):
        where = f"fanout[{index}] ({fanout.name})"
        if fanout.name in seen:
            raise ValueError(f"{where}: two [[fanout]] tools are named {fanout.name!r}")
        seen.add(fanout.name)
        if fanout.group is not None and fanout.group not in names:
            raise ValueError(f"{where}: group = {fanout.group!r} names no server")


def _check_replica_ids(specs: Sequence[ReplicaSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(f"two replicas have the id {spec.id!r}")
        seen.add(spec.id)
