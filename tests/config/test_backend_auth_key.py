"""`[[servers]] auth` (signing in to a remote backend) and `[gateway] token_key`."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_agg.config import load_config
from mcp_agg.config.backendauth import BackendOAuthConfig
from mcp_agg.errors import ConfigError
from mcp_agg.security import redact


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "servers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def server(lines: str) -> str:
    return f'[[servers]]\nname = "a"\n{lines}'


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            'url = "https://h/mcp"\nauth = { type = "oauth" }\n',
            BackendOAuthConfig(type="oauth"),
        ),
        (
            'url = "https://h/sse"\ntransport = "sse"\n'
            'auth = { type = "oauth", scopes = ["repo", "read:org"], client_id = "cid",'
            ' client_secret = "${SECRET}", per_user = false }\n',
            BackendOAuthConfig(
                type="oauth",
                scopes=["repo", "read:org"],
                client_id="cid",
                client_secret="s3cret-value",
            ),
        ),
        (
            'url = "https://h/mcp"\n'
            'auth = { type = "oauth", client_metadata_url = "https://me.example/mcp-agg.json" }\n',
            BackendOAuthConfig(type="oauth", client_metadata_url="https://me.example/mcp-agg.json"),
        ),
        ('url = "https://h/mcp"\n', None),
    ],
)
def test_auth_is_read(tmp_path: Path, lines: str, expected: BackendOAuthConfig | None) -> None:
    config = load_config(write(tmp_path, server(lines)), environ={"SECRET": "s3cret-value"})
    assert config.servers[0].auth == expected


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            server('command = "x"\nauth = { type = "oauth" }\n'),
            ["servers[0] (a)", "`auth` applies only to a server with a `url`"],
        ),
        (
            server('url = "https://h/mcp"\nauth = { type = "basic" }\n'),
            ["servers[0] (a).auth.type", "'oauth'"],
        ),
        (
            server('url = "https://h/mcp"\nauth = { type = "oauth", scope = ["x"] }\n'),
            ["servers[0] (a).auth.scope", "unknown key"],
        ),
        (
            server('url = "https://h/mcp"\nauth = { type = "oauth", scopes = ["a b"] }\n'),
            ["servers[0] (a).auth.scopes[0]"],
        ),
        (
            server('url = "https://h/mcp"\nauth = { type = "oauth", client_id = "" }\n'),
            ["servers[0] (a).auth.client_id"],
        ),
        *(
            (
                server(
                    'url = "https://h/mcp"\n'
                    f'auth = {{ type = "oauth", client_metadata_url = "{url}" }}\n'
                ),
                ["servers[0] (a).auth.client_metadata_url", "https:// URL with a path"],
            )
            for url in ("http://me.example/mcp-agg.json", "https://me.example/")
        ),
        (
            server('url = "https://h/mcp"\nauth = { type = "oauth", per_user = true }\n'),
            ["servers[0] (a).auth.per_user", "not supported yet"],
        ),
        (
            '[gateway]\ntoken_key = "short"\n',
            ["gateway.token_key", "at least 16"],
        ),
    ],
)
def test_a_bad_auth_names_the_field_and_the_problem(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, text), environ={})
    for fragment in fragments:
        assert fragment in str(raised.value), str(raised.value)


def test_token_key_is_read(tmp_path: Path) -> None:
    text = '[gateway]\ntoken_key = "${KEY}"\n'
    config = load_config(write(tmp_path, text), environ={"KEY": "k" * 32})
    assert config.gateway.token_key == "k" * 32


def test_client_secret_and_token_key_are_secrets() -> None:
    raw = {
        "gateway": {"token_key": "token-key-0123456789"},
        "servers": [
            {"name": "a", "url": "https://h", "auth": {"type": "oauth", "client_secret": "cs-987"}}
        ],
    }
    assert redact.secrets_of(raw) == {"token-key-0123456789", "cs-987"}
