"""Tests for mcp_agg.core.naming: sanitizing, shortening, exposed names and URIs, collisions."""

from __future__ import annotations

import hashlib
import re

import pytest

from mcp_agg.core.naming import (
    MAX_NAME_LENGTH,
    Claim,
    Collision,
    NameRegistry,
    exposed_name,
    exposed_uri,
    namespace,
    sanitize,
)

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


# ---------------------------------------------------------------------------- sanitize


@pytest.mark.parametrize("name", ["get_weather", "get-weather-2", "ABC_xyz-09", "a" * 64])
def test_a_valid_name_is_kept(name: str) -> None:
    assert sanitize(name) == name


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("get.weather", "get_weather"),
        ("a b\tc\nd", "a_b_c_d"),
        ("path/to:tool", "path_to_tool"),
        ("x@y#z!", "x_y_z_"),
        ("café", "caf_"),
        ("日本語", "___"),
        ("emoji🙂", "emoji_"),
        ("", ""),
        ("...", "___"),
    ],
)
def test_invalid_characters_become_underscores_and_a_hash_of_the_name_is_added(
    name: str, stem: str
) -> None:
    result = sanitize(name)
    assert result == f"{stem}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    assert VALID.match(result)


def test_names_that_differ_only_in_invalid_characters_stay_distinct() -> None:
    names = ["工具", "道具", "日本", "a.b", "a/b", "a b", "a_b", "a-b"]
    assert len({sanitize(name) for name in names}) == len(names)


def test_the_hash_is_stable() -> None:
    # The same in every process and every release: clients and configs keep the names.
    assert sanitize("工具") == "___5ca6730d"
    assert exposed_name("cjk", "_", "道具") == "cjk____7483f8ec"


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
    result = sanitize("ü" * 10)
    assert result.startswith("_" * 10)
    assert len(result) == 10 + 1 + 8


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
    # The namespace is the config's own: only its characters change. The backend's name
    # gets a hash of its own when it changes.
    assert exposed_name("my server", "_", "do_thing") == "my_server_do_thing"
    assert exposed_name("my server", "_", "do.thing") == f"my_server_{sanitize('do.thing')}"
    assert exposed_name("", "_", "do thing") == sanitize("do thing")


def test_names_sanitized_alike_in_two_namespaces_stay_distinct() -> None:
    assert exposed_name("a", "_", "b.c") != exposed_name("a_b", "_", "c") == "a_b_c"


@pytest.mark.parametrize(
    ("prefix", "separator", "expected"),
    [("notes", "_", "notes_"), ("my server", "_", "my_server_"), ("a", ".", "a_"), ("", "_", "")],
)
def test_namespace(prefix: str, separator: str, expected: str) -> None:
    assert namespace(prefix, separator) == expected


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
    assert registry.claim("notes_add", Claim("notes", "add"))
    assert registry.claim("notes_add", Claim("notes", "add"))
    assert "notes_add" in registry
    assert "other" not in registry
    assert registry.kind == "tool"
    assert list(registry.collisions()) == []


def test_registry_distinct_names_are_fine() -> None:
    registry = NameRegistry("prompt")
    assert registry.claim("a_x", Claim("a", "x", "a_"))
    assert registry.claim("b_x", Claim("b", "x", "b_"))
    assert list(registry.collisions()) == []


def test_registry_second_owner_is_a_collision_naming_both() -> None:
    registry = NameRegistry("tool")
    registry.claim("search_find_item", Claim("search", "find.item"))
    registry.claim("search_find_item", Claim("search2", "find_item"))
    (collision,) = registry.collisions()
    message = str(collision)
    assert "'search'" in message
    assert "'search2'" in message
    assert "'find.item'" in message
    assert "'find_item'" in message
    assert "'search_find_item'" in message
    assert "collision" in message
    assert collision.exposed == "search_find_item"


def test_registry_message_uses_the_kind() -> None:
    registry = NameRegistry("prompt")
    registry.claim("p", Claim("one", "p"))
    registry.claim("p", Claim("two", "p"))
    (collision,) = registry.collisions()
    assert re.match(
        r"^prompt name collision: 'one' prompt 'p' and 'two' prompt 'p' would both", str(collision)
    )


def test_registry_message_of_three_owners() -> None:
    registry = NameRegistry("tool")
    for group in ("a", "b", "c"):
        registry.claim("x", Claim(group, "x"))
    (collision,) = registry.collisions()
    assert str(collision) == (
        "tool name collision: 'a' tool 'x', 'b' tool 'x' and 'c' tool 'x' would all be "
        "exposed as 'x'"
    )


def test_registry_collision_keeps_the_first_owner() -> None:
    registry = NameRegistry("tool")
    assert registry.claim("x", Claim("first", "x"))
    assert not registry.claim("x", Claim("second", "x"))
    # The first owner can still claim it; the second still cannot.
    assert registry.claim("x", Claim("first", "x"))
    assert not registry.claim("x", Claim("second", "x"))
    (collision,) = registry.collisions()
    assert [claim.group for claim in collision.claims] == ["first", "second"]


def test_registry_detects_names_of_two_namespaces_that_join_alike() -> None:
    registry = NameRegistry("tool")
    registry.claim(exposed_name("a", "_", "b_c"), Claim("a", "b_c", namespace("a", "_")))
    registry.claim(exposed_name("a_b", "_", "c"), Claim("a_b", "c", namespace("a_b", "_")))
    (collision,) = registry.collisions()
    assert collision.exposed == "a_b_c"
    assert not collision.by_config  # only the backends' names made it


@pytest.mark.parametrize(
    ("claims", "by_config"),
    [
        pytest.param([Claim("a", "x", "p_"), Claim("b", "x", "p_")], True, id="one-prefix"),
        pytest.param([Claim("a", "x", ""), Claim("b", "x", "")], True, id="both-unprefixed"),
        pytest.param([Claim("a", "b_c", "a_"), Claim("a_b", "c", "a_b_")], False, id="joined"),
        pytest.param(
            [Claim("a", "x", "a_"), Claim("a", "y", "a_", renamed=True)], True, id="renamed"
        ),
        pytest.param([Claim("a", "x", "a_"), Claim("a", "y", "a_")], False, id="one-server"),
        pytest.param(
            [Claim("a", "x", "a_"), Claim("b", "x", "b_"), Claim("c", "x", "b_")],
            True,
            id="two-of-three-share-a-prefix",
        ),
    ],
)
def test_a_collision_is_the_configs_when_it_put_the_names_together(
    claims: list[Claim], by_config: bool
) -> None:
    assert Collision("tool", "x", tuple(claims)).by_config is by_config
