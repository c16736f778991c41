"""ReplicaGroup: the replicas that share one `name`, seen as one backend.

Every proxied request goes through its group, which picks a replica and bounds the
whole exchange with the request deadline. A request that could not be sent to one
replica (it is down or reconnecting) moves on to the next: nothing reached a backend,
so this is safe for every tool.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import mcp_types

from mcp_agg.config import ServerConfig
from mcp_agg.errors import UpstreamTimeout, UpstreamUnavailable
from mcp_agg.upstream import Listing, Upstream

__all__ = ["ReplicaGroup"]

_T = TypeVar("_T")


class ReplicaGroup:
    """One backend: one namespace, one or more replicas."""

    def __init__(self, name: str, replicas: list[Upstream], *, prefix: str, timeout: float) -> None:
        if not replicas:
            raise ValueError(f"group {name!r} has no replicas")
        self.name = name
        self.replicas = replicas
        self.prefix = prefix
        self.timeout = timeout
        self._turn = itertools.count()

    @property
    def server(self) -> ServerConfig:
        """The first entry's settings; filters and renames are per group."""
        return self.replicas[0].spec.server

    @property
    def listing(self) -> Listing | None:
        """What the group offers: the listing of its first replica that has connected."""
        for replica in self.replicas:
            if replica.available:
                return replica.listing
        for replica in self.replicas:
            if replica.stats.connects:
                return replica.listing
        return None

    def _candidates(self) -> list[Upstream]:
        """Available replicas, starting at the next one in round-robin order."""
        count = len(self.replicas)
        start = next(self._turn) % count
        ordered = self.replicas[start:] + self.replicas[:start]
        return [replica for replica in ordered if replica.available]

    async def _dispatch(self, what: str, send: Callable[[Upstream], Awaitable[_T]]) -> _T:
        try:
            with anyio.fail_after(self.timeout):
                last: UpstreamUnavailable | None = None
                for replica in self._candidates():
                    try:
                        return await send(replica)
                    except UpstreamUnavailable as exc:
                        last = exc  # never sent: the next replica may take it
                states = ", ".join(f"{r.id} {r.state}" for r in self.replicas)
                reason = f"; last: {last}" if last else ""
                raise UpstreamUnavailable(
                    f"{what}: no replica of {self.name!r} is available ({states}){reason}"
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"{what}: no answer from {self.name!r} within {self.timeout:g}s"
            ) from exc

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *, meta: dict[str, Any] | None = None
    ) -> mcp_types.CallToolResult:
        return await self._dispatch(
            f"tool {name!r}", lambda replica: replica.call_tool(name, arguments, meta=meta)
        )

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        return await self._dispatch(f"resource {uri!r}", lambda replica: replica.read_resource(uri))

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None
    ) -> mcp_types.GetPromptResult:
        return await self._dispatch(
            f"prompt {name!r}", lambda replica: replica.get_prompt(name, arguments)
        )
