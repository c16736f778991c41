"""Tests for mcp_agg.core.uris: what the gateway remembers of handed-out URIs, and how a
colliding server's URIs are rewritten in what it hands out."""

from __future__ import annotations

from typing import Any

import mcp_types
import pytest

from mcp_agg.core.uris import Outgoing, UriMemory, UriRewrite, meta_uris

REWRITE = UriRewrite("b", frozenset({"notes://shared"}), ("files://{name}",))


# ---------------------------------------------------------------------------- UriMemory


def test_memory_keeps_the_latest_owner() -> None:
    memory = UriMemory()
    memory.note("demo://1", "alpha")
    memory.note("demo://1", "beta")
    assert memory.owner("demo://1") == "beta"
    assert memory.owner("demo://2") is None


def test_memory_is_bounded_and_forgets_the_least_recently_used() -> None:
    memory = UriMemory(bound=2)
    memory.note("demo://1", "a")
    memory.note("demo://2", "a")
    assert memory.owner("demo://1") == "a"  # used: now the most recent
    memory.note("demo://3", "a")
    assert len(memory) == 2
    assert (memory.owner("demo://1"), memory.owner("demo://2")) == ("a", None)


def test_a_warning_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    memory = UriMemory()
    for _ in range(3):
        memory.warn_once("collision")
    assert [r.getMessage() for r in caplog.records] == ["collision"]


# ---------------------------------------------------------------------------- UriRewrite


@pytest.mark.parametrize(
    ("uri", "exposed"),
    [
        ("notes://shared", "notes://b/shared"),  # a colliding URI
        ("files://a.txt", "files://b/a.txt"),  # fits a colliding template
        ("files://a.txt?x=1", "files://b/a.txt?x=1"),
        ("notes://other", "notes://other"),  # the rest stay as they are
        ("files://dir/a.txt", "files://dir/a.txt"),  # `{name}` is one segment
        ("plain", "plain"),
    ],
)
def test_rewrite(uri: str, exposed: str) -> None:
    assert REWRITE.exposed(uri) == exposed


# ---------------------------------------------------------------------------- Outgoing


def link(uri: str) -> dict[str, Any]:
    return {"type": "resource_link", "uri": uri, "name": "n"}


def embedded(uri: str) -> dict[str, Any]:
    return {"type": "resource", "resource": {"uri": uri, "text": "t"}}


TEXT = {"type": "text", "text": "notes://shared"}  # text is never rewritten


@pytest.mark.parametrize(
    ("content", "rewritten"),
    [
        ([link("notes://shared")], [link("notes://b/shared")]),
        ([embedded("files://a.txt")], [embedded("files://b/a.txt")]),
        ([TEXT, link("notes://other")], [TEXT, link("notes://other")]),
        (
            [TEXT, link("notes://shared"), embedded("notes://other")],
            [TEXT, link("notes://b/shared"), embedded("notes://other")],
        ),
        ([{"type": "resource_link"}, "odd"], [{"type": "resource_link"}, "odd"]),
    ],
)
def test_content_of_a_colliding_server(content: list[Any], rewritten: list[Any]) -> None:
    memory = UriMemory()
    out = Outgoing("beta", memory, REWRITE)
    original = [dict(item) if isinstance(item, dict) else item for item in content]
    assert out.content(content) == rewritten
    assert content == original  # the backend's answer is not changed in place
    for item in content:
        if isinstance(item, dict) and item.get("type") == "resource_link" and "uri" in item:
            assert memory.owner(item["uri"]) == "beta"  # remembered as the backend wrote it


def test_content_of_a_server_without_collisions_is_the_same_object() -> None:
    memory = UriMemory()
    content = [link("notes://shared"), embedded("demo://2")]
    result = {"content": content, "isError": False}
    assert Outgoing("alpha", memory).tool_result(result) is result
    assert (memory.owner("notes://shared"), memory.owner("demo://2")) == ("alpha", "alpha")


def test_tool_result_without_content_is_kept() -> None:
    result = {"isError": True}
    assert Outgoing("beta", UriMemory(), REWRITE).tool_result(result) is result


def test_prompt_result_of_a_colliding_server() -> None:
    result = mcp_types.GetPromptResult(
        messages=[
            mcp_types.PromptMessage(
                role="user", content=mcp_types.TextContent(type="text", text="hi")
            ),
            mcp_types.PromptMessage(
                role="user",
                content=mcp_types.ResourceLink(
                    type="resource_link", uri="notes://shared", name="s"
                ),
            ),
            mcp_types.PromptMessage(
                role="user",
                content=mcp_types.EmbeddedResource(
                    type="resource",
                    resource=mcp_types.TextResourceContents(uri="files://a.txt", text="a"),
                ),
            ),
        ]
    )
    memory = UriMemory()
    out = Outgoing("beta", memory, REWRITE).prompt_result(result)
    link_, resource = out.messages[1].content, out.messages[2].content
    assert isinstance(link_, mcp_types.ResourceLink)
    assert isinstance(resource, mcp_types.EmbeddedResource)
    assert (link_.uri, resource.resource.uri) == ("notes://b/shared", "files://b/a.txt")
    assert memory.owner("files://a.txt") == "beta"
    assert Outgoing("alpha", memory).prompt_result(result) is result


@pytest.mark.parametrize(
    ("meta", "rewritten"),
    [
        ({"ui": {"resourceUri": "notes://shared"}}, {"ui": {"resourceUri": "notes://b/shared"}}),
        ({"ui/resourceUri": "files://x"}, {"ui/resourceUri": "files://b/x"}),
        ({"uri": "notes://shared", "n": 1}, {"uri": "notes://b/shared", "n": 1}),
        ({"note": "notes://shared"}, {"note": "notes://shared"}),  # not a URI field
        ({"ui": {"resourceUri": "ui://app"}}, {"ui": {"resourceUri": "ui://app"}}),
        (None, None),
    ],
)
def test_meta_of_a_colliding_server(
    meta: dict[str, Any] | None, rewritten: dict[str, Any] | None
) -> None:
    assert Outgoing("beta", UriMemory(), REWRITE).meta(meta) == rewritten
    assert Outgoing("alpha", UriMemory()).meta(meta) is meta


@pytest.mark.parametrize(
    ("meta", "uris"),
    [
        ({"ui": {"resourceUri": "ui://a"}, "ui/resourceUri": "ui://a"}, ["ui://a", "ui://a"]),
        ({"deep": {"er": {"imageUri": "img://1"}}, "count": 3}, ["img://1"]),
        ({"uri": 5, "name": "x"}, []),
        (None, []),
    ],
)
def test_meta_uris(meta: dict[str, Any] | None, uris: list[str]) -> None:
    assert list(meta_uris(meta)) == uris
