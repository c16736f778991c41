"""GatewayProvider: the merged catalog as a FastMCP provider.

FastMCP's default `_get_*` methods list everything and filter; on the path of every
call that would cost a full listing, so lookups go straight to the catalog's dicts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastmcp.server.providers import Provider
from fastmcp.utilities.versions import VersionSpec

from mcp_agg.forwarding import (
    ForwardingPrompt,
    ForwardingResource,
    ForwardingTemplate,
    ForwardingTool,
)

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from mcp_agg.catalog import Catalog

__all__ = ["GatewayProvider"]


class GatewayProvider(Provider):
    def __init__(
        self,
        catalog: Callable[[], Catalog],
        lifespan: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    ) -> None:
        super().__init__()
        self._catalog = catalog
        self._lifespan = lifespan

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        if self._lifespan is None:
            yield
            return
        async with self._lifespan():
            yield

    async def _list_tools(self) -> Sequence[ForwardingTool]:
        return list(self._catalog().tools.values())

    async def _get_tool(
        self, name: str, version: VersionSpec | None = None
    ) -> ForwardingTool | None:
        return self._catalog().tools.get(name)

    async def _list_resources(self) -> Sequence[ForwardingResource]:
        return list({id(r): r for r in self._catalog().resources.values()}.values())

    async def _get_resource(
        self, uri: str, version: VersionSpec | None = None
    ) -> ForwardingResource | None:
        return self._catalog().resource(uri)

    async def _list_resource_templates(self) -> Sequence[ForwardingTemplate]:
        return list(self._catalog().templates)

    async def _get_resource_template(
        self, uri: str, version: VersionSpec | None = None
    ) -> ForwardingTemplate | None:
        return self._catalog().template_for(uri)

    async def _list_prompts(self) -> Sequence[ForwardingPrompt]:
        return list(self._catalog().prompts.values())

    async def _get_prompt(
        self, name: str, version: VersionSpec | None = None
    ) -> ForwardingPrompt | None:
        return self._catalog().prompts.get(name)
