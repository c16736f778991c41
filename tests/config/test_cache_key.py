"""`[[servers]] cache` and `[gateway.cache]`: the response cache's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_agg.config import load_config
from mcp_agg.config.cache import ServerCacheConfig
from mcp_agg.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "servers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def server(tmp_path: Path, line: str) -> Path:
    return write(tmp_path, f'[[servers]]\nname = "a"\ncommand = "x"\n{line}\n')


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", None),
        ("cache = false", None),
        (
            'cache = { tools = ["get_*"], ttl = 30 }',
            ServerCacheConfig(tools=["get_*"], ttl=30),
        ),
        (
            'cache = { tools = ["*"], ttl = 0.5, scope = "public", read_only_tools = ["q"] }',
            ServerCacheConfig(tools=["*"], ttl=0.5, scope="public", read_only_tools=["q"]),
        ),
    ],
)
def test_cache_is_off_unless_a_table_says(
    tmp_path: Path, line: str, expected: ServerCacheConfig | None
) -> None:
    assert load_config(server(tmp_path, line), environ={}).servers[0].cache == expected


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("cache = true", '(a).cache: expected `false` or a table like { tools = ["get_*"]'),
        ('cache = "yes"', "(a).cache: expected `false` or a table"),
        ('cache = { tools = ["get_*"] }', "(a).cache.ttl: required key is missing"),
        ('cache = { tools = ["g"], ttl = 0 }', "(a).cache.ttl: Input should be greater than 0"),
        ("cache = { tools = [], ttl = 3 }", "(a).cache.tools: List should have at least 1 item"),
        ('cache = { tools = ["g"], ttl = 3, scope = "shared" }', "(a).cache.scope: Input should"),
        ('cache = { tools = ["g"], ttl = 3, tll = 4 }', "(a).cache.tll: unknown key"),
    ],
)
def test_a_bad_cache_names_the_field_and_the_problem(
    tmp_path: Path, line: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(server(tmp_path, line), environ={})
    assert fragment in str(raised.value), str(raised.value)


def test_replicas_agree_on_cache(tmp_path: Path) -> None:
    entry = '[[servers]]\nname = "a"\ncommand = "x"\n'
    text = f'{entry}cache = {{ tools = ["g"], ttl = 3 }}\n{entry}'
    with pytest.raises(ConfigError, match="replicas of 'a' disagree on `cache`"):
        load_config(write(tmp_path, text), environ={})


def test_gateway_cache_bounds(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[gateway.cache]\nmax_entries = 5\n"), environ={})
    assert (config.gateway.cache.max_entries, config.gateway.cache.max_bytes) == (5, 16 << 20)
    with pytest.raises(ConfigError, match=r"gateway.cache.max_bytes: Input should be greater"):
        load_config(write(tmp_path, "[gateway.cache]\nmax_bytes = 10\n"), environ={})
