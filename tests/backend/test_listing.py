"""Fetching a replica's listing: its lists asked for at once across a network, one after
another over a pipe; a failure raised as itself."""

from __future__ import annotations

from typing import Any, cast

import anyio
import mcp_types
import pytest
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.listing import fetch_listing

TOOL = mcp_types.Tool(name="t", input_schema={"type": "object"})


class FakeClient:
    """Answers each list after `delay` (or its own in `delays`); `fail` maps a list to
    the error it raises."""

    server_capabilities = None  # unknown: every list is asked for

    def __init__(
        self,
        fail: dict[str, MCPError] | None = None,
        delay: float = 0.0,
        delays: dict[str, float] | None = None,
    ) -> None:
        self.fail = fail or {}
        self.delays = delays or {}
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled: list[str] = []

    async def _answer(self, method: str, result: Any) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.delays.get(method, self.delay))
            if method in self.fail:
                raise self.fail[method]
            return result
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(method)
            raise
        finally:
            self.in_flight -= 1

    async def list_tools_mcp(self, **_: Any) -> mcp_types.ListToolsResult:
        return await self._answer("tools/list", mcp_types.ListToolsResult(tools=[TOOL]))

    async def list_resources_mcp(self, **_: Any) -> mcp_types.ListResourcesResult:
        return await self._answer("resources/list", mcp_types.ListResourcesResult(resources=[]))

    async def list_resource_templates_mcp(self, **_: Any) -> mcp_types.ListResourceTemplatesResult:
        result = mcp_types.ListResourceTemplatesResult(resource_templates=[])
        return await self._answer("resources/templates/list", result)

    async def list_prompts_mcp(self, **_: Any) -> mcp_types.ListPromptsResult:
        return await self._answer("prompts/list", mcp_types.ListPromptsResult(prompts=[]))


def client(fake: FakeClient) -> Client[Any]:
    return cast("Client[Any]", fake)


@pytest.mark.parametrize(("at_once", "in_flight"), [(True, 4), (False, 1)])
async def test_the_four_lists_are_in_flight_together_only_at_once(
    at_once: bool, in_flight: int
) -> None:
    fake = FakeClient(delay=0.05)
    listing = await fetch_listing(client(fake), at_once=at_once)
    assert fake.most_in_flight == in_flight
    assert [t.name for t in listing.tools] == ["t"]


@pytest.mark.parametrize("at_once", [True, False])
async def test_a_list_the_backend_does_not_implement_is_empty(at_once: bool) -> None:
    fake = FakeClient(fail={"prompts/list": MCPError(-32601, "Method not found")})
    listing = await fetch_listing(client(fake), at_once=at_once)
    assert listing.prompts == ()
    assert [t.name for t in listing.tools] == ["t"]


async def test_a_failing_list_fails_the_listing_as_itself_and_stops_the_others() -> None:
    error = MCPError(-32000, "Connection closed")
    fake = FakeClient(fail={"resources/list": error}, delay=30, delays={"resources/list": 0})
    with anyio.fail_after(10), pytest.raises(MCPError) as raised:  # not an exception group
        await fetch_listing(client(fake), at_once=True)
    assert raised.value is error
    assert sorted(fake.cancelled) == ["prompts/list", "resources/templates/list", "tools/list"]


async def test_one_after_another_a_failing_list_fails_the_listing_as_itself() -> None:
    error = MCPError(-32000, "Connection closed")
    fake = FakeClient(fail={"resources/list": error})
    with anyio.fail_after(10), pytest.raises(MCPError) as raised:
        await fetch_listing(client(fake), at_once=False)
    assert raised.value is error
    assert fake.most_in_flight == 1
