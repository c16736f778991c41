"""Tests for mcp_agg.security.access: role rules, and the provider's filtering by them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from mcp_agg.config import RoleConfig
from mcp_agg.front.provider import GatewayProvider
from mcp_agg.security.access import ALLOW_ALL, DENY_ALL, AccessPolicy, Grant, Visibility

ROLES = {
    "admin": RoleConfig(allow=["*"]),
    "reader": RoleConfig(allow=["notes_list_*", "notes_read_note", "notes://*"]),
    "no_units": RoleConfig(deny=["units_*", "units://*"]),
    "no_delete": RoleConfig(allow=["notes_*"], deny=["*_delete_*"]),
}


def grant(*roles: str) -> Grant:
    return AccessPolicy(ROLES).grant(frozenset(roles))


def test_allow_patterns_are_globs_over_exposed_names() -> None:
    reader = grant("reader")
    assert reader.allows("notes_list_notes")
    assert reader.allows("notes_read_note")
    assert not reader.allows("notes_add_note")
    assert not reader.allows("units_convert")
    # `*` spans `/` and `:`, so a URI pattern covers everything under it.
    assert reader.allows("notes://notes/index")
    assert reader.allows("notes://notes/note/{title}")
    # Matching is case-sensitive and whole-name.
    assert not reader.allows("NOTES_list_notes")
    assert not reader.allows("x_notes_read_note")


def test_deny_wins_within_a_role_and_across_roles() -> None:
    assert grant("no_delete").allows("notes_add_note")
    assert not grant("no_delete").allows("notes_delete_note")
    both = grant("admin", "no_units")
    assert both.allows("notes_add_note")
    assert not both.allows("units_convert")
    assert not both.allows("units://units/list")
    # A role's deny takes away what another role allows, in either order.
    assert not grant("no_delete", "admin").allows("notes_delete_note")


def test_roles_add_up() -> None:
    combined = grant("reader", "no_delete")
    assert combined.allows("notes_add_note")  # from no_delete's allow
    assert combined.allows("notes://notes/index")  # from reader
    assert not combined.allows("notes_delete_note")


def test_no_roles_unknown_roles_and_deny_only_roles_grant_nothing() -> None:
    assert grant() is DENY_ALL
    assert not grant().allows("anything")
    assert not grant("ghost").allows("notes_list_notes")
    assert not grant("no_units").allows("notes_list_notes")
    assert grant("ghost", "reader").allows("notes_list_notes")


def test_without_roles_configured_every_caller_is_allowed_everything() -> None:
    policy = AccessPolicy({})
    assert policy.grant(frozenset()) is ALLOW_ALL
    assert policy.grant(frozenset({"whatever"})).allows("units_convert")


def test_grants_and_decisions_are_cached() -> None:
    policy = AccessPolicy(ROLES)
    first = policy.grant(frozenset({"reader"}))
    assert policy.grant(frozenset({"reader"})) is first
    assert first.allows("notes_read_note")
    assert first.allows("notes_read_note")
    assert first._decisions == {"notes_read_note": True}


# ---------------------------------------------------------------- the provider


def _tool(name: str) -> Any:
    return SimpleNamespace(name=name)


def _catalog() -> Any:
    tools = {n: _tool(n) for n in ("notes_add_note", "notes_list_notes", "units_convert")}
    prompts = {n: _tool(n) for n in ("notes_summarize", "units_explain")}
    template = SimpleNamespace(uri_template="notes://notes/note/{title}")
    return SimpleNamespace(
        tools=tools,
        local={},
        tool=tools.get,
        prompts=prompts,
        templates=(template,),
        resources={},
        template_for=lambda uri: template if uri.startswith("notes://notes/note/") else None,
        # URIs a backend handed out: those with "made" in them.
        uris=SimpleNamespace(owner=lambda uri: object() if "made" in uri else None),
        unlisted=None,
    )


@pytest.mark.parametrize("roles", [("reader",), ("admin", "no_units")])
async def test_provider_lists_and_looks_up_only_allowed_names(roles: tuple[str, ...]) -> None:
    catalog = _catalog()
    current = grant(*roles)
    provider = GatewayProvider(
        lambda: catalog,
        visibility=Visibility(lambda: catalog, SimpleNamespace(grant=lambda: current)),
    )
    listed = {t.name for t in await provider._list_tools()}
    expected = {n for n in catalog.tools if current.allows(n)}
    assert listed == expected
    assert listed  # each case allows something, and hides something
    assert listed != set(catalog.tools)
    for name in catalog.tools:
        found = await provider._get_tool(name)
        assert (found is not None) == current.allows(name)
    assert {p.name for p in await provider._list_prompts()} == {
        n for n in catalog.prompts if current.allows(n)
    }
    assert await provider._get_prompt("units_explain") is None
    template = await provider._get_resource_template("notes://notes/note/x")
    assert (template is not None) == current.allows("notes://notes/note/{title}")


async def test_provider_without_access_shows_everything() -> None:
    catalog = _catalog()
    provider = GatewayProvider(lambda: catalog)
    assert len(await provider._list_tools()) == 3
    assert await provider._get_tool("units_convert") is catalog.tools["units_convert"]
    assert len(await provider._list_resource_templates()) == 1


def test_visibility_answers_names_uris_and_completion_refs() -> None:
    catalog = _catalog()
    catalog.resource = lambda uri: None
    current = grant("admin", "no_units")
    reader = Visibility(lambda: catalog, SimpleNamespace(grant=lambda: current))
    assert reader.allows("notes_list_notes")
    assert not reader.allows("units_convert")
    assert reader.allows_uri("notes://notes/note/x")  # through its template
    assert not reader.allows_uri("nothing://at/all")  # an unknown URI is not allowed
    # A URI a backend handed out is matched as it is.
    assert reader.allows_uri("notes://made/1")
    assert not reader.allows_uri("units://made/1")
    assert reader.allows_completion({"type": "ref/prompt", "name": "notes_summarize"})
    assert not reader.allows_completion({"type": "ref/prompt", "name": "units_explain"})
    assert reader.allows_completion({"type": "ref/resource", "uri": "notes://notes/note/{title}"})
    assert reader.keep(catalog.tools.values(), lambda t: t.name) == [
        t for t in catalog.tools.values() if reader.allows(t.name)
    ]
    everyone = Visibility(lambda: catalog)  # no access: everything, unknown URIs too
    assert everyone.allows("units_convert")
    assert everyone.allows_uri("nothing://at/all")
    assert everyone.allows_completion({"type": "ref/prompt", "name": "units_explain"})
