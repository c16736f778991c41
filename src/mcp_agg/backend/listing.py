"""What a replica offers, how it is fetched, and the notifications that say it changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import mcp_types
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from mcp.server.caching import CacheHint
from mcp.shared.exceptions import MCPError

from mcp_agg.core.cachehints import merge_hints

__all__ = ["ListChangedHandler", "ListMethod", "Listing", "fetch_listing"]

_METHOD_NOT_FOUND = -32601
#: Pages of one list fetched at most (FastMCP's own auto-pagination limit).
_MAX_PAGES = 250

ListMethod = Literal["tools/list", "resources/list", "resources/templates/list", "prompts/list"]


@dataclass(frozen=True, slots=True)
class Listing:
    """What one replica offers, as the backend described it (raw MCP types)."""

    tools: tuple[mcp_types.Tool, ...] = ()
    resources: tuple[mcp_types.Resource, ...] = ()
    templates: tuple[mcp_types.ResourceTemplate, ...] = ()
    prompts: tuple[mcp_types.Prompt, ...] = ()
    #: The cache hints the backend sent with each list it was asked for (a
    #: handshake-era backend's are the SDK's defaults: `ttlMs: 0`, `private`).
    hints: Mapping[ListMethod, CacheHint] = field(default_factory=dict)


async def fetch_listing(client: Client[Any], *, at_once: bool) -> Listing:
    """Everything the backend offers, asking only for what its capabilities announce.

    With `at_once` (a backend across the network) the lists are asked for together: a
    replica serves only once it is listed, and the round trips would add up one after
    another. The SDK's client session takes concurrent requests (each waits on its own
    response stream); the first list that fails fails the listing, as it would one
    after another (not an exception group, which the callers' failure classification
    would not see through). Over a pipe they are asked for one after another: a local
    backend answers them one at a time anyway (the bench backend's lists took 11.2-11.5 ms
    at once, 11.3-13.4 ms one by one), and each request in flight holds its tasks
    and streams: with 20 backends listed together, 0.4 MB of the gateway's peak RSS
    (docs/benchmarks.md, "Issue 17, sixth round").
    """
    caps = client.server_capabilities
    methods: list[ListMethod] = []
    if caps is None or caps.tools is not None:
        methods.append("tools/list")
    if caps is None or caps.resources is not None:
        methods += ["resources/list", "resources/templates/list"]
    if caps is None or caps.prompts is not None:
        methods.append("prompts/list")
    fetched: dict[ListMethod, tuple[list[Any], CacheHint | None]] = {}
    if not at_once:
        for method in methods:
            fetched[method] = await _optional(client, method)
        return _listing(fetched)
    failures: list[Exception] = []

    async def fetch(method: ListMethod) -> None:
        try:
            fetched[method] = await _optional(client, method)
        except Exception as exc:
            failures.append(exc)
            tg.cancel_scope.cancel()  # the others are of no use now

    async with anyio.create_task_group() as tg:
        for method in methods:
            tg.start_soon(fetch, method)
    if failures:
        raise failures[0]
    return _listing(fetched)


def _listing(fetched: Mapping[ListMethod, tuple[list[Any], CacheHint | None]]) -> Listing:
    def items(method: ListMethod) -> tuple[Any, ...]:
        return tuple(fetched[method][0]) if method in fetched else ()

    return Listing(
        items("tools/list"),
        items("resources/list"),
        items("resources/templates/list"),
        items("prompts/list"),
        {method: hint for method, (_, hint) in fetched.items() if hint is not None},
    )


async def _optional(client: Client[Any], method: ListMethod) -> tuple[list[Any], CacheHint | None]:
    """A list, every page of it, and its cache hint (the merge of its pages' hints).

    A list that a backend does not implement ("method not found") is empty, and no
    part of the gateway's list.
    """
    found: list[Any] = []
    hints: list[CacheHint] = []
    cursor: str | None = None
    try:
        for _ in range(_MAX_PAGES):
            page = await _page(client, method, cursor)
            found.extend(_items(page))
            hints.append(CacheHint(ttl_ms=page.ttl_ms, scope=page.cache_scope))
            cursor = page.next_cursor
            if cursor is None:
                break
    except MCPError as exc:
        if exc.error.code == _METHOD_NOT_FOUND:
            return [], None
        raise
    return found, merge_hints(hints)


async def _page(client: Client[Any], method: ListMethod, cursor: str | None) -> Any:
    # The backend's answer as it is: the gateway keeps no cache of its own here.
    if method == "tools/list":
        return await client.list_tools_mcp(cursor=cursor, cache_mode="bypass")
    if method == "resources/list":
        return await client.list_resources_mcp(cursor=cursor, cache_mode="bypass")
    if method == "resources/templates/list":
        return await client.list_resource_templates_mcp(cursor=cursor, cache_mode="bypass")
    return await client.list_prompts_mcp(cursor=cursor, cache_mode="bypass")


def _items(page: Any) -> list[Any]:
    for name in ("tools", "resources", "resource_templates", "prompts"):
        if hasattr(page, name):
            return list(getattr(page, name))
    return []


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
