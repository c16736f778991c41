"""What a replica offers, how it is fetched, and the notifications that say it changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from mcp.shared.exceptions import MCPError

__all__ = ["ListChangedHandler", "Listing", "fetch_listing"]

_METHOD_NOT_FOUND = -32601


@dataclass(frozen=True, slots=True)
class Listing:
    """What one replica offers, as the backend described it (raw MCP types)."""

    tools: tuple[mcp_types.Tool, ...] = ()
    resources: tuple[mcp_types.Resource, ...] = ()
    templates: tuple[mcp_types.ResourceTemplate, ...] = ()
    prompts: tuple[mcp_types.Prompt, ...] = ()


async def fetch_listing(client: Client[Any]) -> Listing:
    """Everything the backend offers, asking only for what its capabilities announce."""
    caps = client.server_capabilities
    tools: list[mcp_types.Tool] = []
    resources: list[mcp_types.Resource] = []
    templates: list[mcp_types.ResourceTemplate] = []
    prompts: list[mcp_types.Prompt] = []
    if caps is None or caps.tools is not None:
        tools = await _optional(client.list_tools())
    if caps is None or caps.resources is not None:
        resources = await _optional(client.list_resources())
        templates = await _optional(client.list_resource_templates())
    if caps is None or caps.prompts is not None:
        prompts = await _optional(client.list_prompts())
    return Listing(tuple(tools), tuple(resources), tuple(templates), tuple(prompts))


async def _optional(coro: Any) -> list[Any]:
    """A list call that a backend may not implement: "method not found" is an empty list."""
    try:
        return list(await coro)
    except MCPError as exc:
        if exc.error.code == _METHOD_NOT_FOUND:
            return []
        raise


class ListChangedHandler(MessageHandler):
    """Turns a backend's list_changed notifications into a listing refresh, and relays
    its resource updates."""

    def __init__(
        self, on_change: Callable[[], None], on_updated: Callable[[str], Awaitable[None]]
    ) -> None:
        self._on_change = on_change
        self._on_updated = on_updated

    async def on_resource_updated(self, message: mcp_types.ResourceUpdatedNotification) -> None:
        await self._on_updated(str(message.params.uri))

    async def on_tool_list_changed(self, message: mcp_types.ToolListChangedNotification) -> None:
        self._on_change()

    async def on_resource_list_changed(
        self, message: mcp_types.ResourceListChangedNotification
    ) -> None:
        self._on_change()

    async def on_prompt_list_changed(
        self, message: mcp_types.PromptListChangedNotification
    ) -> None:
        self._on_change()
