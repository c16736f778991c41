"""GatewayProvider: the merged catalog as a FastMCP provider.

FastMCP's default `_get_*` methods list everything and filter; on the path of every
call that would cost a full listing, so lookups go straight to the catalog's dicts.

With `access` (an authenticated HTTP front), lists and lookups keep only what the current
caller's roles allow, so FastMCP's own "unknown tool/resource/prompt" answers apply to a
hidden name (`mcp_agg.security.access`).

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

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from mcp_agg.components.local import LocalTool
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.security.access import Grant

__all__ = ["GatewayProvider"]


class GatewayProvider(Provider):
    def __init__(
        self,
        catalog: Callable[[], Catalog],
        lifespan: Callable[[], AbstractAsyncContextManager[object]] | None = None,
        access: Callable[[], Grant] | None = None,
    ) -> None:
        super().__init__()
        self._catalog = catalog
        self._lifespan = lifespan
        #: The current caller's grant; None: everything is visible (no auth, stdio).
        self._access = access

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
        if self._access is None:
            return tools
        grant = self._access()
        return [t for t in tools if grant.allows(t.name)]

    async def _get_tool(
        self, name: str, version: VersionSpec | None = None
    ) -> ForwardingTool | LocalTool | None:
        if self._access is not None and not self._access().allows(name):
            return None
        return self._catalog().tool(name)

    async def _list_resources(self) -> Sequence[ForwardingResource]:
        resources = list({id(r): r for r in self._catalog().resources.values()}.values())
        if self._access is None:
            return resources
        grant = self._access()
        return [r for r in resources if grant.allows(r.exposed)]

    async def _get_resource(
        self, uri: str, version: VersionSpec | None = None
    ) -> ForwardingResource | None:
        resource = self._catalog().resource(uri)
        if resource is None or self._access is None or self._access().allows(resource.exposed):
            return resource
        return None

    async def _list_resource_templates(self) -> Sequence[ForwardingTemplate]:
        templates = self._catalog().templates
        if self._access is None:
            return list(templates)
        grant = self._access()
        return [t for t in templates if grant.allows(t.uri_template)]

    async def _get_resource_template(
        self, uri: str, version: VersionSpec | None = None
    ) -> ForwardingTemplate | None:
        template = self._catalog().template_for(uri)
        if template is None or self._access is None or self._access().allows(template.uri_template):
            return template
        return None

    async def _list_prompts(self) -> Sequence[ForwardingPrompt]:
        prompts = self._catalog().prompts
        if self._access is None:
            return list(prompts.values())
        grant = self._access()
        return [p for name, p in prompts.items() if grant.allows(name)]

    async def _get_prompt(
        self, name: str, version: VersionSpec | None = None
    ) -> ForwardingPrompt | None:
        if self._access is not None and not self._access().allows(name):
            return None
        return self._catalog().prompts.get(name)
