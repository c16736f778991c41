"""`[[servers]] protocol`: the era the gateway speaks to a backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_agg.config import load_config
from mcp_agg.errors import ConfigError


def server(tmp_path: Path, lines: str) -> str:
    path = tmp_path / "servers.toml"
    path.write_text(f'[[servers]]\nname = "a"\n{lines}', encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('command = "x"\n', "auto"),
        ('command = "x"\nprotocol = "legacy"\n', "legacy"),
        ('command = "x"\nprotocol = "modern"\n', "modern"),
        ('url = "http://h/sse"\ntransport = "sse"\nprotocol = "legacy"\n', "legacy"),
    ],
)
def test_protocol_is_auto_unless_pinned(tmp_path: Path, lines: str, expected: str) -> None:
    config = load_config(Path(server(tmp_path, lines)), environ={})
    assert config.servers[0].protocol == expected


@pytest.mark.parametrize(
    ("lines", "fragments"),
    [
        (
            'command = "x"\nprotocol = "2026-07-28"\n',
            ["(a).protocol", "'auto', 'legacy' or 'modern'"],
        ),
        (
            'url = "http://h/sse"\ntransport = "sse"\nprotocol = "modern"\n',
            ["servers[0]", "does not apply to an SSE server (handshake era only)"],
        ),
    ],
)
def test_a_bad_protocol_names_the_field_and_the_problem(
    tmp_path: Path, lines: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(Path(server(tmp_path, lines)), environ={})
    for fragment in fragments:
        assert fragment in str(raised.value), str(raised.value)
