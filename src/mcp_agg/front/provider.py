"""GatewayProvider: the merged catalog as a FastMCP provider.

FastMCP's default `_get_*` methods list everything and filter; on the path of every
call that would cost a full listing, so lookups go straight to the catalog's dicts.

With `visibility` (per role on an authenticated HTTP front), lists and lookups keep only
what the current caller may see, so FastMCP's own "unknown tool/resource/prompt" answers
apply to a hidden name (`mcp_agg.security.access`).

In search mode (`mcp_agg.components.search`) the tool list is the search and call tools alone;
every tool of the catalog can still be looked up (and so called) by its name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastmcp.server.providers import Provider
from fastmcp.utilities.versions import VersionSpec

from mcp_agg.components.forwarding import (
    ForwardingPrompt,
    ForwardingResource,
    ForwardingTemplate,
    ForwardingTool,
)
from mcp_agg.components.search import listed_instead
from mcp_agg.security.access import Visibility

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from mcp_agg.components.local import LocalTool
    from mcp_agg.core.catalog import Catalog

__all__ = ["GatewayProvider"]


class GatewayProvider(Provider):
    def __init__(
        self,
        catalog: Callable[[], Catalog],
        lifespan: Callable[[], AbstractAsyncContextManager[object]] | None = None,
        visibility: Visibility | None = None,
    ) -> None:
        super().__init__()
        self._catalog = catalog
        self._lifespan = lifespan
        #: What the current caller may see; by default everything (no auth, stdio).
        self._visibility = Visibility(catalog) if visibility is None else visibility

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        if self._lifespan is None:
            yield
            return
        async with self._lifespan():
            yield

    async def _list_tools(self) -> Sequence[ForwardingTool | LocalTool]:
        catalog = self._catalog()
        tools: list[ForwardingTool | LocalTool] = [*listed_instead(catalog)] or [
            *catalog.tools.values(),
            *catalog.local.values(),
        ]
        return self._visibility.keep(tools, lambda t: t.name)

    async def _get_tool(
        self, name: str, version: VersionSpec | None = None
    ) -> ForwardingTool | LocalTool | None:
        if not self._visibility.allows(name):
            return None
        return self._catalog().tool(name)

    async def _list_resources(self) -> Sequence[ForwardingResource]:
        resources = {id(r): r for r in self._catalog().resources.values()}.values()
        return self._visibility.keep(resources, lambda r: r.exposed)

    async def _get_resource(
        self, uri: str, version: VersionSpec | None = None
    ) -> ForwardingResource | None:
        resource = self._catalog().resource(uri)
        if resource is None or self._visibility.allows(resource.exposed):
            return resource
        return None

    async def _list_resource_templates(self) -> Sequence[ForwardingTemplate]:
        return self._visibility.keep(self._catalog().templates, lambda t: t.uri_template)

    async def _get_resource_template(
        self, uri: str, version: VersionSpec | None = None
    ) -> ForwardingTemplate | None:
        template = self._catalog().template_for(uri)
        if template is None or self._visibility.allows(template.uri_template):
            return template
        return None

    async def _list_prompts(self) -> Sequence[ForwardingPrompt]:
        return self._visibility.keep(self._catalog().prompts.values(), lambda p: p.name)

    async def _get_prompt(
        self, name: str, version: VersionSpec | None = None
    ) -> ForwardingPrompt | None:
        if not self._visibility.allows(name):
            return None
        return self._catalog().prompts.get(name)
