"""Tests for mcp_agg.core.catalog: which names a merge exposes and which it withholds, and
routing: which group owns an exposed resource URI or a completion reference, and the name
its backend knows it by."""

from __future__ import annotations

import re
from typing import Any

import mcp_types
import pytest

from mcp_agg.backend.upstream import Listing
from mcp_agg.core.catalog import Catalog, build_catalog
from mcp_agg.core.naming import MAX_NAME_LENGTH
from mcp_agg.errors import NameCollisionError
from mcp_agg.resilience.group import ReplicaGroup
from tests.fakes import connected, upstreams


def group(name: str, prefix: str, listing: Listing, **server: Any) -> ReplicaGroup:
    (upstream,) = upstreams(name, prefix=prefix, **server)
    return ReplicaGroup(name, [connected(upstream, listing)], prefix=prefix, timeout=5)


def listing(stem: str) -> Listing:
    """A backend's listing: one resource, one template and one prompt, named by `stem`."""
    return Listing(
        resources=(mcp_types.Resource(uri=f"notes://{stem}/index", name=f"{stem}-index"),),
        templates=(
            mcp_types.ResourceTemplate(uri_template=f"files://{stem}/{{name}}", name="file"),
        ),
        prompts=(mcp_types.Prompt(name=f"greet_{stem}"),),
    )


@pytest.fixture
async def groups() -> tuple[ReplicaGroup, ReplicaGroup]:
    # Upstream needs a running event loop (its anyio events): build it in one.
    return group("alpha", "a", listing("x")), group("beta", "b", listing("y"))


@pytest.fixture
def catalog(groups: tuple[ReplicaGroup, ReplicaGroup]) -> Catalog:
    return build_catalog(groups, "_", strict=True)


async def test_groups_are_listed(catalog: Catalog) -> None:
    # The prefix makes every exposed name differ from the original one.
    assert set(catalog.prompts) == {"a_greet_x", "b_greet_y"}
    assert {t.uri_template for t in catalog.templates} == {
        "files://a/x/{name}",
        "files://b/y/{name}",
    }
    assert {"notes://a/x/index", "notes://b/y/index"} <= set(catalog.resources)


# ---------------------------------------------------------------------------- route_uri


async def test_route_uri_of_a_resource(
    catalog: Catalog, groups: tuple[ReplicaGroup, ReplicaGroup]
) -> None:
    alpha, beta = groups
    assert catalog.route_uri("notes://a/x/index") == (alpha, "notes://x/index")
    assert catalog.route_uri("notes://b/y/index") == (beta, "notes://y/index")


async def test_route_uri_under_a_template(
    catalog: Catalog, groups: tuple[ReplicaGroup, ReplicaGroup]
) -> None:
    alpha, beta = groups
    assert catalog.route_uri("files://a/x/readme.md") == (alpha, "files://x/readme.md")
    assert catalog.route_uri("files://b/y/report.txt") == (beta, "files://y/report.txt")


@pytest.mark.parametrize(
    "uri",
    [
        "notes://x/index",  # the backend's own URI is not exposed
        "files://x/readme.md",
        "notes://c/x/index",
        "unknown://a/x/index",
    ],
)
async def test_route_uri_of_an_unknown_uri_is_none(catalog: Catalog, uri: str) -> None:
    assert catalog.route_uri(uri) is None


# ---------------------------------------------------------------------------- route_completion


async def test_route_completion_of_a_prompt(
    catalog: Catalog, groups: tuple[ReplicaGroup, ReplicaGroup]
) -> None:
    alpha, beta = groups
    assert catalog.route_completion({"type": "ref/prompt", "name": "a_greet_x"}) == (
        alpha,
        {"type": "ref/prompt", "name": "greet_x"},
    )
    assert catalog.route_completion({"type": "ref/prompt", "name": "b_greet_y"}) == (
        beta,
        {"type": "ref/prompt", "name": "greet_y"},
    )


async def test_route_completion_keeps_the_rest_of_the_reference(
    catalog: Catalog, groups: tuple[ReplicaGroup, ReplicaGroup]
) -> None:
    ref: dict[str, Any] = {"type": "ref/prompt", "name": "a_greet_x", "title": "Greet"}
    route = catalog.route_completion(ref)
    assert route == (groups[0], {"type": "ref/prompt", "name": "greet_x", "title": "Greet"})
    assert ref["name"] == "a_greet_x"  # the client's reference is not changed in place


async def test_route_completion_of_a_resource_template(
    catalog: Catalog, groups: tuple[ReplicaGroup, ReplicaGroup]
) -> None:
    alpha, beta = groups
    assert catalog.route_completion({"type": "ref/resource", "uri": "files://a/x/{name}"}) == (
        alpha,
        {"type": "ref/resource", "uri": "files://x/{name}"},
    )
    assert catalog.route_completion({"type": "ref/resource", "uri": "files://b/y/{name}"}) == (
        beta,
        {"type": "ref/resource", "uri": "files://y/{name}"},
    )


async def test_route_completion_of_a_resource_uri(
    catalog: Catalog, groups: tuple[ReplicaGroup, ReplicaGroup]
) -> None:
    assert catalog.route_completion({"type": "ref/resource", "uri": "notes://b/y/index"}) == (
        groups[1],
        {"type": "ref/resource", "uri": "notes://y/index"},
    )


@pytest.mark.parametrize(
    "ref",
    [
        {"type": "ref/prompt", "name": "greet_x"},  # the backend's name, not the exposed one
        {"type": "ref/prompt", "name": "nope"},
        {"type": "ref/prompt"},
        {"type": "ref/resource", "uri": "files://x/{name}"},
        {"type": "ref/resource", "uri": "files://c/x/{name}"},
        {"type": "ref/resource"},
        {"type": "ref/tool", "name": "a_greet_x"},
        {},
    ],
)
async def test_route_completion_of_an_unknown_reference_is_none(
    catalog: Catalog, ref: dict[str, Any]
) -> None:
    assert catalog.route_completion(ref) is None


# ---------------------------------------------------------------------------- names

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def offering(*names: str) -> Listing:
    """A backend's listing: a tool and a prompt of each name."""
    return Listing(
        tools=tuple(mcp_types.Tool(name=n, input_schema={"type": "object"}) for n in names),
        prompts=tuple(mcp_types.Prompt(name=n) for n in names),
    )


def originals(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """Exposed tool name -> (server, original name)."""
    return {name: (tool.group.name, tool.original) for name, tool in catalog.tools.items()}


@pytest.mark.parametrize("strict", [True, False])
async def test_names_that_sanitize_alike_get_distinct_valid_names(strict: bool) -> None:
    catalog = build_catalog([group("cjk", "cjk", offering("工具", "道具"))], "_", strict=strict)
    tools = originals(catalog)
    assert sorted(tools.values()) == [("cjk", "工具"), ("cjk", "道具")]
    assert all(VALID.match(name) for name in tools)
    assert {p.original for p in catalog.prompts.values()} == {"工具", "道具"}
    assert all(VALID.match(name) for name in catalog.prompts)
    assert catalog.problems == ()


async def test_names_of_two_servers_that_sanitize_alike_stay_distinct() -> None:
    groups = [group("a", "a", offering("b.c")), group("a_b", "a_b", offering("c"))]
    catalog = build_catalog(groups, "_", strict=True)
    tools = originals(catalog)
    assert tools["a_b_c"] == ("a_b", "c")
    assert sorted(tools.values()) == [("a", "b.c"), ("a_b", "c")]
    assert catalog.problems == ()


@pytest.mark.parametrize("strict", [True, False])
async def test_names_the_backends_made_collide_are_withheld_and_the_rest_served(
    strict: bool,
) -> None:
    groups = [
        group("x", "x", offering("y_z", "only_x")),
        group("x_y", "x_y", offering("z")),
        group("other", "other", offering("ok")),
    ]
    catalog = build_catalog(groups, "_", strict=strict)
    assert set(catalog.tools) == {"x_only_x", "other_ok"}
    assert set(catalog.prompts) == {"x_only_x", "other_ok"}
    tool, prompt = catalog.problems
    assert tool.startswith("tool name collision: 'x' tool 'y_z' and 'x_y' tool 'z'")
    assert "'x_y_z'" in tool
    assert "none of them is exposed" in tool
    assert prompt.startswith("prompt name collision:")


@pytest.mark.parametrize(
    ("groups", "named"),
    [
        pytest.param(
            lambda: [group("first", "", offering("add")), group("second", "", offering("add"))],
            ["'first'", "'second'", "'add'"],
            id="one-prefix-for-two-servers",
        ),
        pytest.param(
            lambda: [group("s", "s", offering("old", "new"), rename_tools={"old": "new"})],
            ["'old'", "'new'", "'s_new'"],
            id="a-rename-onto-a-taken-name",
        ),
    ],
)
async def test_a_collision_the_config_made_is_a_startup_error_and_withheld_later(
    groups: Any, named: list[str]
) -> None:
    with pytest.raises(NameCollisionError, match="collision") as raised:
        build_catalog(groups(), "_", strict=True)
    assert all(word in str(raised.value) for word in named), raised.value
    assert "rename_tools" in str(raised.value)
    # While running (a refresh), the names are withheld instead.
    catalog = build_catalog(groups(), "_", strict=False)
    assert catalog.problems
    assert not set(catalog.tools) & {"add", "s_new"}


async def test_resources_of_two_servers_with_one_prefix_collide_by_the_config() -> None:
    same = Listing(resources=(mcp_types.Resource(uri="notes://index", name="index"),))
    groups = [group("a", "p", same), group("b", "p", same)]
    with pytest.raises(NameCollisionError, match="resource name collision"):
        build_catalog(groups, "_", strict=True)
    catalog = build_catalog(groups, "_", strict=False)
    assert "notes://p/index" not in catalog.resources


async def test_a_long_sanitized_name_fits() -> None:
    catalog = build_catalog([group("s", "s", offering("工" * 80))], "_", strict=True)
    (name,) = catalog.tools
    assert VALID.match(name)
    assert len(name) == MAX_NAME_LENGTH
