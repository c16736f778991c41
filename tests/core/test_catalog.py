"""Tests for mcp_agg.core.catalog routing: which group owns an exposed resource URI or a
completion reference, and the name its backend knows it by."""

from __future__ import annotations

from typing import Any

import mcp_types
import pytest

from mcp_agg.backend.upstream import Listing
from mcp_agg.core.catalog import Catalog, build_catalog
from mcp_agg.resilience.group import ReplicaGroup
from tests.fakes import connected, upstreams


def group(name: str, prefix: str, listing: Listing) -> ReplicaGroup:
    (upstream,) = upstreams(name, prefix=prefix)
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
