"""Tests for mcp_agg.components.forwarding's reads of unlisted URIs (`UnlistedResources`):
the server known to have handed a URI out first, then each server that offers
resources in config order, until one does not say "not found"."""

from __future__ import annotations

from typing import Any

import mcp_types
import pytest
from fastmcp.exceptions import ResourceError
from mcp.shared.exceptions import MCPError

from mcp_agg.components.forwarding import UnlistedResources
from mcp_agg.core.uris import UriIndex, UriMemory
from mcp_agg.errors import UpstreamUnavailable

URI = "demo://made/1"
NOT_FOUND = MCPError(mcp_types.INVALID_PARAMS, f"Resource {URI} not found")
RETIRED_NOT_FOUND = MCPError(-32002, "Resource not found")  # earlier protocol versions
DOWN = UpstreamUnavailable("backend is down")
BROKEN = MCPError(mcp_types.INTERNAL_ERROR, "it broke")


class Reader:
    """A server that answers a read of URI with `answer` (a text, or an error), and
    writes its name in `asked` when asked."""

    def __init__(self, name: str, answer: str | Exception, asked: list[str]) -> None:
        self.name = name
        self.answer = answer
        self.asked = asked

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        self.asked.append(self.name)
        if isinstance(self.answer, Exception):
            raise self.answer
        contents = mcp_types.TextResourceContents(uri=uri, text=self.answer)
        return mcp_types.ReadResourceResult(contents=[contents])


def unlisted(
    readers: list[Reader], owner: str | None = None
) -> tuple[UnlistedResources, UriMemory]:
    memory = UriMemory()
    if owner is not None:
        memory.note(URI, owner)
    groups: dict[str, Any] = {reader.name: reader for reader in readers}
    index = UriIndex(memory, groups, offering=tuple(groups.values()))
    return UnlistedResources(index), memory


async def text_of(found: Any) -> str:
    assert found is not None
    result = (await found._read(URI, {})).to_mcp_result(URI)
    (content,) = result.contents
    assert content.uri == URI
    return str(content.text)


@pytest.mark.parametrize(
    ("answers", "owner", "text", "asked"),
    [
        # c. the server that handed it out is asked first, and alone when it has it
        (["a", "b"], "s1", "b", ["s1"]),
        ([NOT_FOUND, "b"], None, "b", ["s0", "s1"]),
        # d. in config order, past every "not found"
        ([NOT_FOUND, "b", "c"], None, "b", ["s0", "s1"]),
        ([RETIRED_NOT_FOUND, "b"], None, "b", ["s0", "s1"]),
        (["a"], None, "a", ["s0"]),  # one server that offers resources: one read
        # the owner said "not found": the others are asked
        (["a", NOT_FOUND], "s1", "a", ["s1", "s0"]),
        # a server that cannot answer now does not hold the others back
        ([DOWN, "b"], None, "b", ["s0", "s1"]),
    ],
)
async def test_the_first_server_that_has_it_answers(
    answers: list[str | Exception], owner: str | None, text: str, asked: list[str]
) -> None:
    log: list[str] = []
    readers = [Reader(f"s{i}", answer, log) for i, answer in enumerate(answers)]
    resources, memory = unlisted(readers, owner)
    assert await text_of(await resources.find(URI)) == text
    assert log == asked
    # Remembered: the next read goes straight to the server that had it.
    answered = next(r for r in readers if r.answer == text)
    assert memory.owner(URI) == answered.name


async def test_none_has_it() -> None:
    readers = [Reader("s0", NOT_FOUND, []), Reader("s1", RETIRED_NOT_FOUND, [])]
    resources, memory = unlisted(readers)
    assert await resources.find(URI) is None
    assert memory.owner(URI) is None


async def test_no_server_offers_resources() -> None:
    resources, _ = unlisted([])
    assert await resources.find(URI) is None


async def test_a_servers_own_error_is_the_answer() -> None:
    log: list[str] = []
    resources, _ = unlisted([Reader("s0", BROKEN, log), Reader("s1", "b", log)])
    with pytest.raises(MCPError, match="it broke"):
        await resources.find(URI)
    assert log == ["s0"]


async def test_not_found_is_not_claimed_while_a_server_could_not_answer() -> None:
    readers = [Reader("s0", DOWN, []), Reader("s1", NOT_FOUND, [])]
    resources, _ = unlisted(readers)
    with pytest.raises(ResourceError, match="backend is down"):
        await resources.find(URI)
