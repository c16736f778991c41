"""Tests for mcp_agg.core.naming: sanitizing, shortening, exposed names and URIs, collisions."""

from __future__ import annotations

import re

import pytest

from mcp_agg.core.naming import MAX_NAME_LENGTH, NameRegistry, exposed_name, exposed_uri, sanitize
from mcp_agg.errors import CatalogError, NameCollisionError

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


# ---------------------------------------------------------------------------- sanitize


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get_weather", "get_weather"),
        ("get-weather-2", "get-weather-2"),
        ("ABC_xyz-09", "ABC_xyz-09"),
        ("get.weather", "get_weather"),
        ("a b\tc\nd", "a_b_c_d"),
        ("path/to:tool", "path_to_tool"),
        ("x@y#z!", "x_y_z_"),
        ("café", "caf_"),
        ("日本語", "___"),
        ("emoji🙂", "emoji_"),
        ("", "_"),
        ("...", "___"),
    ],
)
def test_sanitize_maps_invalid_characters(name: str, expected: str) -> None:
    assert sanitize(name) == expected
    assert VALID.match(sanitize(name))


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "\x00",
        "ä" * 200,
        "🙂" * 70,
        "a" * 64,
        "a" * 65,
        "a" * 1000,
        "ns.tool/" * 30,
        "x" * 63 + "é",
        "-" * 80,
    ],
)
def test_sanitize_result_always_valid(name: str) -> None:
    result = sanitize(name)
    assert VALID.match(result), result
    assert len(result) <= MAX_NAME_LENGTH


def test_max_name_length_is_64() -> None:
    assert MAX_NAME_LENGTH == 64


def test_name_of_exactly_64_characters_is_kept() -> None:
    name = "b" * 64
    assert sanitize(name) == name


def test_long_name_is_shortened_to_64() -> None:
    name = "very_long_tool_name_" * 10
    result = sanitize(name)
    assert len(result) == 64
    assert VALID.match(result)
    # A readable beginning is kept.
    assert result.startswith("very_long_tool_name_very_long")


def test_shortening_is_deterministic() -> None:
    name = "t" * 65
    assert sanitize(name) == sanitize(name) == sanitize("t" * 65)


def test_long_names_sharing_a_beginning_differ() -> None:
    common = "c" * 100
    first, second = sanitize(common + "_one"), sanitize(common + "_two")
    assert first != second
    assert len(first) == len(second) == 64
    assert VALID.match(first)
    assert VALID.match(second)


def test_long_names_differing_only_in_invalid_characters_differ() -> None:
    # Both sanitize to the same long string; the hash is of the original.
    first, second = sanitize("n" * 70 + ".x"), sanitize("n" * 70 + "/x")
    assert first != second
    assert len(first) == len(second) == 64


def test_short_unicode_name_is_not_shortened() -> None:
    assert sanitize("ü" * 10) == "_" * 10


# ---------------------------------------------------------------------------- exposed_name


def test_exposed_name_with_prefix() -> None:
    assert exposed_name("notes", "_", "add_note") == "notes_add_note"


def test_exposed_name_without_prefix() -> None:
    assert exposed_name("", "_", "add_note") == "add_note"


def test_exposed_name_without_prefix_ignores_separator() -> None:
    assert exposed_name("", "__", "add") == "add"


@pytest.mark.parametrize(
    ("separator", "expected"),
    [("__", "notes__add"), ("-", "notes-add"), ("", "notesadd"), (".", "notes_add")],
)
def test_exposed_name_custom_separator(separator: str, expected: str) -> None:
    assert exposed_name("notes", separator, "add") == expected


def test_exposed_name_is_sanitized() -> None:
    assert exposed_name("my server", "_", "do.thing") == "my_server_do_thing"
    assert exposed_name("", "_", "do thing") == "do_thing"


def test_exposed_name_long_is_shortened() -> None:
    result = exposed_name("backend", "_", "x" * 100)
    assert len(result) == 64
    assert VALID.match(result)
    assert result.startswith("backend_xxx")
    assert result != exposed_name("backend", "_", "x" * 101)


# ---------------------------------------------------------------------------- exposed_uri


@pytest.mark.parametrize(
    ("prefix", "uri", "expected"),
    [
        ("notes", "notes://index", "notes://notes/index"),
        ("docs", "file:///etc/hosts", "file://docs//etc/hosts"),
        ("api", "https://example.com/a?b=c", "https://api/example.com/a?b=c"),
        ("db", "postgres+ssl://host/table", "postgres+ssl://db/host/table"),
        ("w", "weather://{city}/current", "weather://w/{city}/current"),
        ("w", "weather://{city}", "weather://w/{city}"),
        ("n", "notes://", "notes://n/"),
        ("x", "index", "x/index"),
        ("x", "urn:isbn:123", "x/urn:isbn:123"),
        ("x", "{id}/detail", "x/{id}/detail"),
        ("x", "", "x/"),
    ],
)
def test_exposed_uri(prefix: str, uri: str, expected: str) -> None:
    assert exposed_uri(prefix, uri) == expected


@pytest.mark.parametrize("uri", ["notes://index", "index", "weather://{city}", ""])
def test_exposed_uri_empty_prefix_keeps_uri(uri: str) -> None:
    assert exposed_uri("", uri) == uri


def test_exposed_uri_multiline_rest_is_kept() -> None:
    assert exposed_uri("p", "s://a\nb") == "s://p/a\nb"


# ---------------------------------------------------------------------------- NameRegistry


def test_registry_same_owner_twice_is_fine() -> None:
    registry = NameRegistry("tool")
    registry.claim("notes_add", "notes", "add")
    registry.claim("notes_add", "notes", "add")
    assert "notes_add" in registry
    assert "other" not in registry
    assert registry.kind == "tool"


def test_registry_distinct_names_are_fine() -> None:
    registry = NameRegistry("prompt")
    registry.claim("a_x", "a", "x")
    registry.claim("b_x", "b", "x")
    assert "a_x" in registry
    assert "b_x" in registry


def test_registry_second_owner_raises() -> None:
    registry = NameRegistry("tool")
    registry.claim("search_find_item", "search", "find.item")
    with pytest.raises(NameCollisionError) as exc_info:
        registry.claim("search_find_item", "search2", "find_item")
    message = str(exc_info.value)
    assert "'search'" in message
    assert "'search2'" in message
    assert "'find.item'" in message
    assert "'find_item'" in message
    assert "'search_find_item'" in message
    assert "collision" in message
    assert isinstance(exc_info.value, CatalogError)


def test_registry_same_group_different_original_raises() -> None:
    registry = NameRegistry("tool")
    registry.claim("g_a_b", "g", "a.b")
    with pytest.raises(NameCollisionError, match=r"'a\.b'.*'a_b'.*'g_a_b'"):
        registry.claim("g_a_b", "g", "a_b")


def test_registry_message_uses_the_kind() -> None:
    registry = NameRegistry("prompt")
    registry.claim("p", "one", "p")
    with pytest.raises(NameCollisionError, match=r"^prompt name collision: 'one' prompt 'p'"):
        registry.claim("p", "two", "p")


def test_registry_collision_keeps_the_first_owner() -> None:
    registry = NameRegistry("tool")
    registry.claim("x", "first", "x")
    with pytest.raises(NameCollisionError):
        registry.claim("x", "second", "x")
    # The first owner can still claim it; the second still cannot.
    registry.claim("x", "first", "x")
    with pytest.raises(NameCollisionError):
        registry.claim("x", "second", "x")


def test_registry_detects_collisions_created_by_sanitizing() -> None:
    registry = NameRegistry("tool")
    registry.claim(exposed_name("a", "_", "b.c"), "a", "b.c")
    with pytest.raises(NameCollisionError, match="'a_b_c'"):
        registry.claim(exposed_name("a_b", "_", "c"), "a_b", "c")
