"""Tests for mcp_agg.core.catalog: which names a merge exposes and which it withholds, and
routing: which group owns a resource URI or a completion reference, and the name its
backend knows it by (listed resources, listed templates, URIs handed out; the URIs of a
server that collide with an earlier one's)."""

from __future__ import annotations

import re
from typing import Any

import mcp_types
import pytest

from mcp_agg.backend.upstream import Listing
from mcp_agg.core.catalog import Catalog, build_catalog
from mcp_agg.core.naming import MAX_NAME_LENGTH
from mcp_agg.core.uris import UriMemory
from mcp_agg.errors import NameCollisionError
from mcp_agg.resilience.group import ReplicaGroup
from tests.fakes import connected, upstreams


def group(name: str, prefix: str, listing: Listing, **server: Any) -> ReplicaGroup:
    (upstream,) = upstreams(name, prefix=prefix, **server)
    return ReplicaGroup(name, [connected(upstream, listing)], prefix=prefix, timeout=5)


def listing(stem: str) -> Listing:
    """A backend's listing, named by `stem`: a resource, a template, a prompt and a tool
    of its own (the tool's `_meta.ui.resourceUri` links to an unlisted URI, and its
    `_meta.link.uri` to the shared resource), plus the resource `notes://shared` and the
    template `files://{name}`, which every such backend lists."""
    return Listing(
        tools=(
            mcp_types.Tool(
                name=f"app_{stem}",
                input_schema={"type": "object"},
                _meta={
                    "ui": {"resourceUri": f"ui://{stem}/app.html"},
                    "link": {"uri": "notes://shared"},
                },
            ),
        ),
        resources=(
            mcp_types.Resource(uri=f"notes://{stem}/index", name=f"{stem}-index"),
            mcp_types.Resource(uri="notes://shared", name="shared"),
        ),
        templates=(
            mcp_types.ResourceTemplate(uri_template=f"files://{stem}/{{name}}", name="file"),
            mcp_types.ResourceTemplate(uri_template="files://{name}", name="any file"),
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
    # Names get the prefix; URIs stay as listed, but for the second server's that
    # collide with the first's.
    assert set(catalog.prompts) == {"a_greet_x", "b_greet_y"}
    assert {t.uri_template for t in catalog.templates} == {
        "files://x/{name}",
        "files://y/{name}",
        "files://{name}",
        "files://b/{name}",
    }
    assert {"notes://x/index", "notes://y/index", "notes://shared", "notes://b/shared"} == set(
        catalog.resources
    )


async def test_a_collision_is_logged_once_naming_both(
    groups: tuple[ReplicaGroup, ReplicaGroup], caplog: pytest.LogCaptureFixture
) -> None:
    memory = UriMemory()
    for _ in range(3):  # rebuilds
        build_catalog(groups, "_", strict=True, memory=memory)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "resource URI collision: 'alpha' and 'beta' both list 'notes://shared'; 'alpha' keeps "
        "it, 'beta' gets 'notes://b/shared' instead, and its URIs are rewritten alike",
        "resource template collision: 'alpha' and 'beta' both list 'files://{name}'; 'alpha' "
        "keeps it, 'beta' gets 'files://b/{name}' instead, and its URIs are rewritten alike",
    ]


async def test_a_colliding_servers_listed_meta_uris_are_rewritten(catalog: Catalog) -> None:
    alpha = catalog.tools["a_app_x"].to_mcp_tool().meta
    beta = catalog.tools["b_app_y"].to_mcp_tool().meta
    assert alpha == {"ui": {"resourceUri": "ui://x/app.html"}, "link": {"uri": "notes://shared"}}
    assert beta == {"ui": {"resourceUri": "ui://y/app.html"}, "link": {"uri": "notes://b/shared"}}


async def test_a_prefixed_template_is_matched_before_a_wildcard_one() -> None:
    paths = Listing(templates=(mcp_types.ResourceTemplate(uri_template="f://{p*}", name="f"),))
    groups = [group("alpha", "a", paths), group("beta", "b", paths)]
    catalog = build_catalog(groups, "_", strict=True)
    assert catalog.route_uri("f://b/x") == (groups[1], "f://x")
    assert catalog.route_uri("f://c/x") == (groups[0], "f://c/x")


async def test_an_empty_prefix_rewrites_with_the_server_name() -> None:
    groups = [group("alpha", "", listing("x")), group("beta", "", listing("y"))]
    catalog = build_catalog(groups, "_", strict=True)
    assert "notes://beta/shared" in catalog.resources


# ---------------------------------------------------------------------------- route_uri


@pytest.mark.parametrize(
    ("uri", "owner", "backend_uri"),
    [
        # a. a listed resource
        ("notes://x/index", 0, "notes://x/index"),
        ("notes://y/index", 1, "notes://y/index"),
        ("notes://shared", 0, "notes://shared"),  # the first in config order keeps it
        ("notes://b/shared", 1, "notes://shared"),  # the later one's, prefixed
        # b. a listed template
        ("files://x/readme.md", 0, "files://x/readme.md"),
        ("files://y/report.txt", 1, "files://y/report.txt"),
        ("files://readme.md", 0, "files://readme.md"),
        ("files://b/readme.md", 1, "files://readme.md"),
        # c. a URI a listing's _meta hands out
        ("ui://x/app.html", 0, "ui://x/app.html"),
        ("ui://y/app.html", 1, "ui://y/app.html"),
    ],
)
async def test_route_uri(
    catalog: Catalog,
    groups: tuple[ReplicaGroup, ReplicaGroup],
    uri: str,
    owner: int,
    backend_uri: str,
) -> None:
    assert catalog.route_uri(uri) == (groups[owner], backend_uri)


async def test_route_uri_of_a_uri_a_result_handed_out(
    catalog: Catalog, groups: tuple[ReplicaGroup, ReplicaGroup]
) -> None:
    assert catalog.route_uri("demo://made/1") is None
    catalog.uris.outgoing("beta").content([{"type": "resource_link", "uri": "demo://made/1"}])
    assert catalog.route_uri("demo://made/1") == (groups[1], "demo://made/1")


@pytest.mark.parametrize(
    "uri",
    [
        "notes://a/x/index",  # URIs are not prefixed unless they collide
        "notes://a/shared",  # the first server's are never prefixed
        "files://a/readme.md/more",
        "unknown://a/x/index",
    ],
)
async def test_route_uri_of_an_unknown_uri_is_none(catalog: Catalog, uri: str) -> None:
    assert catalog.route_uri(uri) is None


@pytest.mark.parametrize(
    ("backend_uri", "exposed"),
    [
        ("notes://shared", "notes://b/shared"),
        ("files://readme.md", "files://b/readme.md"),
        ("notes://y/index", "notes://y/index"),  # only URIs that collide are rewritten
        ("files://y/a.txt", "files://y/a.txt"),
    ],
)
async def test_handed_out_is_rewritten_for_a_colliding_server(
    catalog: Catalog, backend_uri: str, exposed: str
) -> None:
    assert catalog.handed_out("beta", backend_uri) == exposed
    assert catalog.handed_out("alpha", backend_uri) == backend_uri
    assert catalog.route_uri(exposed) is not None


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


@pytest.mark.parametrize(
    ("uri", "owner", "backend_uri"),
    [
        ("files://x/{name}", 0, "files://x/{name}"),  # templates
        ("files://y/{name}", 1, "files://y/{name}"),
        ("files://{name}", 0, "files://{name}"),
        ("files://b/{name}", 1, "files://{name}"),
        ("notes://y/index", 1, "notes://y/index"),  # resources
        ("notes://b/shared", 1, "notes://shared"),
    ],
)
async def test_route_completion_of_a_resource_reference(
    catalog: Catalog,
    groups: tuple[ReplicaGroup, ReplicaGroup],
    uri: str,
    owner: int,
    backend_uri: str,
) -> None:
    assert catalog.route_completion({"type": "ref/resource", "uri": uri}) == (
        groups[owner],
        {"type": "ref/resource", "uri": backend_uri},
    )


@pytest.mark.parametrize(
    "ref",
    [
        {"type": "ref/prompt", "name": "greet_x"},  # the backend's name, not the exposed one
        {"type": "ref/prompt", "name": "nope"},
        {"type": "ref/prompt"},
        {"type": "ref/resource", "uri": "files://a/x/{name}"},
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


async def test_resources_of_three_servers_with_one_prefix_collide_by_the_config() -> None:
    same = Listing(resources=(mcp_types.Resource(uri="notes://index", name="index"),))
    # The first keeps the URI; the second and the third would both get `notes://p/index`.
    groups = [group("a", "p", same), group("b", "p", same), group("c", "p", same)]
    with pytest.raises(NameCollisionError, match="resource name collision"):
        build_catalog(groups, "_", strict=True)
    catalog = build_catalog(groups, "_", strict=False)
    assert set(catalog.resources) == {"notes://index"}
    # Two of them are both served.
    catalog = build_catalog(groups[:2], "_", strict=True)
    assert set(catalog.resources) == {"notes://index", "notes://p/index"}


async def test_a_long_sanitized_name_fits() -> None:
    catalog = build_catalog([group("s", "s", offering("工" * 80))], "_", strict=True)
    (name,) = catalog.tools
    assert VALID.match(name)
    assert len(name) == MAX_NAME_LENGTH
