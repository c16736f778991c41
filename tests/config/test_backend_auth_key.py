"""`[[servers]] auth` (signing in to a remote backend) and `[gateway] token_key`."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.client.auth.utils import is_valid_client_metadata_url

from mcp_agg.config import load_config
from mcp_agg.config.backendauth import BackendOAuthConfig, _is_client_metadata_url
from mcp_agg.config.gateway import public_url_of
from mcp_agg.errors import ConfigError
from mcp_agg.security import redact


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "servers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def server(lines: str) -> str:
    return f'[[servers]]\nname = "a"\n{lines}'


#: A team gateway: callers with identities, a token key, a public URL.
TEAM = (
    '[gateway]\ntoken_key = "k0123456789abcdef"\npublic_url = "https://gw.example"\n'
    '[gateway.auth]\ntype = "bearer"\ntokens = [{ token = "t", client_id = "alice" }]\n'
)


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
            ["servers[0] (a).auth.per_user", "needs [gateway.auth]"],
        ),
        (
            TEAM.replace('token_key = "k0123456789abcdef"\n', "")
            + server('url = "https://h/mcp"\nauth = { type = "oauth", per_user = true }\n'),
            ["servers[0] (a).auth.per_user", "needs [gateway] token_key"],
        ),
        (
            TEAM.replace('public_url = "https://gw.example"\n', "")
            + server('url = "https://h/mcp"\nauth = { type = "oauth", per_user = true }\n'),
            ["servers[0] (a).auth.per_user", "needs [gateway] public_url"],
        ),
        (
            TEAM
            + server(
                'url = "https://h/mcp"\nsession = "shared"\n'
                'auth = { type = "oauth", per_user = true }\n'
            ),
            ["servers[0] (a)", 'session = "shared"', "never carries a user's token"],
        ),
        (
            '[gateway]\npublic_url = "ftp://gw"\n',
            ["gateway.public_url"],
        ),
        (
            '[gateway]\npublic_url = "https://gw/#x"\n',
            ["gateway.public_url"],
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


@pytest.mark.parametrize(
    ("gateway", "public_url"),
    [
        (TEAM, "https://gw.example"),
        (
            '[gateway]\ntoken_key = "k0123456789abcdef"\n[gateway.auth]\ntype = "oauth"\n'
            'resource = "https://gw.example:8443/mcp"\n'
            'authorization_servers = ["https://idp.example"]\n'
            'jwks_uri = "https://idp.example/jwks"\n',
            "https://gw.example:8443",
        ),
    ],
)
def test_per_user_is_read_with_its_session_and_public_url(
    tmp_path: Path, gateway: str, public_url: str
) -> None:
    text = gateway + server('url = "https://h/mcp"\nauth = { type = "oauth", per_user = true }\n')
    config = load_config(write(tmp_path, text), environ={})
    assert config.servers[0].auth is not None
    assert config.servers[0].auth.per_user
    assert config.servers[0].session == "per_client"
    assert public_url_of(config.gateway) == public_url


@pytest.mark.parametrize(
    "url",
    [
        "https://me.example/mcp-agg.json",
        "https://me.example/",
        "https://me.example",
        "https://me.example/;params",
        "http://me.example/mcp-agg.json",
        "HTTPS://me.example/a",
        "https://[::1/a",
        "me.example/mcp-agg.json",
        "",
    ],
)
def test_a_client_metadata_url_is_checked_as_the_sdk_checks_it(url: str) -> None:
    # The config's own copy of the SDK's test (importing the SDK's is slow: see
    # _is_client_metadata_url): the two must not drift apart.
    assert _is_client_metadata_url(url) is is_valid_client_metadata_url(url)
