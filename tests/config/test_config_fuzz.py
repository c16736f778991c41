"""Property-based tests of the config loader: whatever the file holds, a clean `ConfigError`.

Generated broken servers.toml documents (wrong value types in known fields, unknown keys,
missing required keys, `${VAR}` references, invalid TOML text, random bytes) and mcpServers
JSON files go through `load_config`. It must either return a `Config` or raise `ConfigError`
(never another exception, never hang), and the error must name the file and, when a field
is at fault, the field's path, without echoing a configured secret.

The known fields come from the pydantic models, so a field added later is fuzzed too.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import signal
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from mcp_agg.config import (
    AuthConfig,
    BreakerConfig,
    Config,
    GatewayConfig,
    RateLimitConfig,
    RetryConfig,
    RoleConfig,
    ServerConfig,
    TokenConfig,
    load_config,
)
from mcp_agg.errors import ConfigError

HEADER_SECRET = "s3cr3t-header-token-value"
TOKEN_SECRET = "tok-SECRET-1234567890"
SECRETS = (HEADER_SECRET, TOKEN_SECRET)

#: A valid document using most sections; each example breaks one part of a copy of it.
BASE: dict[str, Any] = {
    "gateway": {
        "name": "fuzz",
        "retry": {"attempts": 2},
        "breaker": {"failure_threshold": 3},
        "auth": {
            "type": "bearer",
            "tokens": [{"token": TOKEN_SECRET, "client_id": "ci", "roles": ["reader"]}],
        },
        "roles": {"reader": {"allow": ["*"], "deny": []}},
        "rate_limit": {"requests_per_second": 5.0, "burst": 10},
    },
    "servers": [
        {"name": "notes", "command": "python", "args": ["notes.py"], "env": {"A": "b"}},
        {
            "name": "search",
            "url": "http://127.0.0.1:1/mcp",
            "headers": {"Authorization": f"Bearer {HEADER_SECRET}"},
        },
    ],
}

#: Where each model sits in BASE: (path to the table, model).
TABLES: list[tuple[tuple[str | int, ...], type[BaseModel]]] = [
    ((), Config),
    (("gateway",), GatewayConfig),
    (("gateway", "retry"), RetryConfig),
    (("gateway", "breaker"), BreakerConfig),
    (("gateway", "auth"), AuthConfig),
    (("gateway", "auth", "tokens", 0), TokenConfig),
    (("gateway", "roles", "reader"), RoleConfig),
    (("gateway", "rate_limit"), RateLimitConfig),
    (("servers", 0), ServerConfig),
    (("servers", 1), ServerConfig),
    (("servers", 0, "retry"), RetryConfig),
    (("servers", 1, "breaker"), BreakerConfig),
]
FIELDS = [((*table, name), model) for table, model in TABLES for name in model.model_fields]

#: A fuzzed loader call that takes longer than this is a hang.
TIME_LIMIT = 10

# Hypothesis runs each test's examples in one function call, so the temporary folder
# comes from tmp_path_factory (one per test, reused by every example) rather than the
# function-scoped tmp_path fixture, which hypothesis would rightly warn about.
FUZZ = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------- strategies

keys = st.text(min_size=1, max_size=12)
scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail, rather than hang the run, when the block takes longer than `seconds`."""

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"the loader did not finish within {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def load(path: Path, environ: dict[str, str] | None = None) -> ConfigError | Config:
    """Load `path`; return the Config, or the ConfigError after checking it is clean.

    Any other exception propagates and fails the test.
    """
    with time_limit(TIME_LIMIT):
        try:
            return load_config(path, environ or {})
        except ConfigError as exc:
            error = exc
    assert error.source == str(path)
    assert str(error).startswith(f"{path}: "), str(error)
    for secret in SECRETS:
        assert secret not in str(error)
    return error


def where(exc: ConfigError) -> str:
    """The error's text without the file name (which could contain any field's name)."""
    return f"{exc.loc}: {exc.problem}"


def dotted(path: tuple[str | int, ...], doc: dict[str, Any]) -> list[str]:
    """How a field path may be written in an error: plain, and with entry names."""
    plain, named = "", ""
    node: Any = doc
    for part in path:
        if isinstance(part, int):
            plain += f"[{part}]"
            named += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            label = None
            if isinstance(node, dict):
                label = node.get("name", node.get("client_id"))
            if isinstance(label, str):
                named += f" ({label})"
        else:
            plain += f".{part}" if plain else part
            named += f".{part}" if named else part
            node = node.get(part) if isinstance(node, dict) else None
    return [plain, named]


def assert_names_field(exc: ConfigError, path: tuple[str | int, ...], doc: dict[str, Any]) -> None:
    """The error points at the field, or at its table and mentions the field."""
    text = where(exc)
    if any(loc in text for loc in dotted(path, doc)):
        return
    parents = dotted(path[:-1], doc) if len(path) > 1 else [""]
    leaf = str(path[-1])
    message = f"error for {path} names neither the field nor its table: {text}"
    assert any(p in text for p in parents), message
    assert leaf in text, message


def set_path(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> None:
    node: Any = doc
    for part in path[:-1]:
        if isinstance(part, str) and part not in node:
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def write_toml(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / "servers.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def write_bytes(folder: Path, data: bytes, suffix: str = ".toml") -> Path:
    path = folder / f"servers{suffix}"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_base_document_is_valid(folder: Path) -> None:
    assert isinstance(load(write_toml(folder, BASE)), Config)


# ---------------------------------------------------------------- servers.toml


@FUZZ
@given(field=st.sampled_from(FIELDS), value=toml_values)
def test_any_value_in_a_known_field(
    folder: Path, field: tuple[tuple[str | int, ...], type[BaseModel]], value: Any
) -> None:
    path, _ = field
    doc = copy.deepcopy(BASE)
    set_path(doc, path, value)
    result = load(write_toml(folder, doc))
    if isinstance(result, ConfigError):
        assert_names_field(result, path, doc)


@FUZZ
@given(
    table=st.sampled_from([t for t, _ in TABLES]),
    key=keys,
    value=toml_values,
)
def test_unknown_keys_are_named(
    folder: Path, table: tuple[str | int, ...], key: str, value: Any
) -> None:
    model = dict(TABLES)[table]
    if key in model.model_fields:
        key = key + "_unknown"
    doc = copy.deepcopy(BASE)
    set_path(doc, (*table, key), value)
    result = load(write_toml(folder, doc))
    assert isinstance(result, ConfigError)
    assert "unknown key" in result.problem
    assert_names_field(result, (*table, key), doc)


def _table(doc: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = doc
    for part in path:
        node = node[part]
    return node


def required_fields() -> list[tuple[str | int, ...]]:
    found = []
    for table, model in TABLES:
        try:
            present = _table(BASE, table)
        except (KeyError, IndexError):
            continue
        for name, info in model.model_fields.items():
            if info.is_required() and name in present:
                found.append((*table, name))
    return found


@pytest.mark.parametrize("path", required_fields(), ids=str)
def test_missing_required_key_is_named(folder: Path, path: tuple[str | int, ...]) -> None:
    doc = copy.deepcopy(BASE)
    del _table(doc, path[:-1])[path[-1]]
    result = load(write_toml(folder, doc))
    assert isinstance(result, ConfigError)
    assert_names_field(result, path, doc)


def test_a_server_with_neither_command_nor_url_is_named(folder: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["servers"][0] = {"name": "notes"}
    result = load(write_toml(folder, doc))
    assert isinstance(result, ConfigError)
    assert "servers[0] (notes)" in where(result)


# `${VAR}` references: a value is built from pieces, so the expected expansion is known.
SET = {"HOME_DIR": "/home/fuzz", "TOKEN": "abc", "EMPTY": ""}
var_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
# A TOML file is UTF-8: a lone surrogate cannot be written into one (codec="utf-8").
literal = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="$"), max_size=6)
pieces = st.lists(
    st.one_of(
        literal.map(lambda s: (s, s)),
        st.just(("$$", "$")),
        st.sampled_from(sorted(SET)).map(lambda n: ("${" + n + "}", SET[n])),
        st.tuples(st.sampled_from(sorted(SET)), literal.filter(lambda s: "}" not in s)).map(
            lambda nd: ("${" + nd[0] + ":-" + nd[1] + "}", SET[nd[0]] or nd[1])
        ),
        st.tuples(
            var_names.filter(lambda n: n not in SET), literal.filter(lambda s: "}" not in s)
        ).map(lambda nd: ("${" + nd[0] + ":-" + nd[1] + "}", nd[1])),
        var_names.filter(lambda n: n not in SET).map(lambda n: ("${" + n + "}", None)),
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(parts=pieces, where_=st.sampled_from([("args", 0), ("env", "A"), ("cwd",)]))
def test_variable_references(
    folder: Path, parts: list[tuple[str, str | None]], where_: tuple[str | int, ...]
) -> None:
    written = "".join(text for text, _ in parts)
    doc = copy.deepcopy(BASE)
    set_path(doc, ("servers", 0, *where_), written)
    result = load(write_toml(folder, doc), SET)
    unset = [text for text, value in parts if value is None]
    if unset:
        assert isinstance(result, ConfigError), f"{written!r} expanded without {unset[0]}"
        assert unset[0] in result.problem
        assert_names_field(result, ("servers", 0, *where_), doc)
        return
    assert isinstance(result, Config), where(result)
    expected = "".join(value or "" for _, value in parts)
    server = result.servers[0]
    actual = {"args": lambda: server.args[0], "env": lambda: server.env["A"]}.get(
        str(where_[0]), lambda: server.cwd
    )()
    assert actual == expected


TOML_TEXT = tomli_w.dumps(BASE)


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.text(alphabet=string.printable, max_size=200),
        # A valid document cut short, or with a random piece spliced in.
        st.integers(0, len(TOML_TEXT)).map(lambda n: TOML_TEXT[:n]),
        st.tuples(st.integers(0, len(TOML_TEXT)), st.text(max_size=20)).map(
            lambda cut: TOML_TEXT[: cut[0]] + cut[1] + TOML_TEXT[cut[0] :]
        ),
    )
)
def test_any_text(folder: Path, text: str) -> None:
    load(write_bytes(folder, text.encode("utf-8")))


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".toml", ".json"]))
def test_any_bytes(folder: Path, data: bytes, suffix: str) -> None:
    load(write_bytes(folder, data, suffix))


# ---------------------------------------------------------------- mcpServers JSON


@FUZZ
@given(
    document=st.one_of(
        json_values,
        st.fixed_dictionaries({"mcpServers": json_values}),
        st.fixed_dictionaries({"mcpServers": st.dictionaries(keys, json_values, max_size=3)}),
        st.fixed_dictionaries(
            {
                "mcpServers": st.dictionaries(
                    keys,
                    st.dictionaries(
                        st.sampled_from(
                            [
                                "command",
                                "args",
                                "env",
                                "cwd",
                                "url",
                                "headers",
                                "type",
                                "transport",
                                "disabled",
                            ]
                        )
                        | keys,
                        json_values,
                        max_size=4,
                    ),
                    min_size=1,
                    max_size=2,
                )
            }
        ),
    )
)
def test_any_mcp_servers_json(folder: Path, document: Any) -> None:
    path = write_bytes(folder, json.dumps(document).encode(), ".json")
    result = load(path)
    if isinstance(result, ConfigError) and "unknown key" in result.problem and result.loc:
        assert result.loc.startswith(("mcpServers.", "servers."))


# ---------------------------------------------------------------- deep nesting

DEPTH = 100_000


@pytest.mark.parametrize(
    ("suffix", "data"),
    [
        (".json", b"[" * DEPTH),
        (".json", b'{"mcpServers": {"a": {"command": "x", "args": ' + b"[" * DEPTH + b"}}}"),
        (".json", b'{"mcpServers": {"a": {"env": ' + b'{"a": ' * DEPTH + b"1" + b"}" * DEPTH),
        (".toml", b"x = " + b"[" * DEPTH),
        (".toml", b"x = " + b"{a = " * DEPTH),
        (".toml", b"[[servers]]\nname = 'a'\ncommand = 'x'\nargs = " + b"[" * 900 + b"]" * 900),
    ],
    ids=["json-array", "json-args", "json-env", "toml-array", "toml-table", "toml-args-900"],
)
def test_deep_nesting_is_a_config_error(folder: Path, suffix: str, data: bytes) -> None:
    result = load(write_bytes(folder, data, suffix))
    assert isinstance(result, ConfigError)


@pytest.mark.parametrize("depth", [200, 500, 800])
def test_deep_but_parseable_values_are_a_config_error(folder: Path, depth: int) -> None:
    """Nested deep enough to parse, and then to strain expansion and validation."""
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    entry = {"command": "x", "args": value}
    path = write_bytes(folder, json.dumps({"mcpServers": {"a": entry}}).encode(), ".json")
    result = load(path)
    assert isinstance(result, ConfigError)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_invalid_utf8_is_a_config_error(folder: Path, suffix: str) -> None:
    result = load(write_bytes(folder, b"\xff\xfe[gateway]\n", suffix))
    assert isinstance(result, ConfigError)
    assert "UTF-8" in result.problem
