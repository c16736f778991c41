"""Importing the MCP client configs people have: Claude Desktop, VS Code, Cursor, Claude Code.

The files in tests/config/mcpjson/ are shaped like the ones each client writes (other
top-level keys, `//` comments, trailing commas, `inputs`, `${workspaceFolder}`, `envFile`,
secrets in clear). Each is imported, and also loaded directly, as `serve -c FILE.json` does:
both go through one translation, so both must give the same servers.
"""

from __future__ import annotations

import json
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_agg.config import Imported, import_mcp_servers, load_config
from mcp_agg.errors import ConfigError

FILES = Path(__file__).parent / "mcpjson"
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
HOME = str(Path.home())
VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def literal(path: Path | str) -> str:
    """A path as servers.toml holds it literally: each `$` doubled."""
    return str(path).replace("$", "$$")


@dataclass(frozen=True)
class Case:
    """One client's file and what importing it must give."""

    path: Path
    servers: list[dict[str, Any]]
    #: name -> (secret?, the value the file itself gives, or None), in order of first use
    variables: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    #: values in clear in the file that must appear nowhere in the output
    secrets: tuple[str, ...] = ()


VSCODE = FILES / "vscode-workspace"
CURSOR = FILES / "cursor-project"

CASES = {
    "claude-desktop": Case(
        FILES / "claude-desktop" / "claude_desktop_config.json",
        servers=[
            {
                "name": "filesystem",
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"],
            },
            {
                "name": "github",
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-github"],
                "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_PERSONAL_ACCESS_TOKEN}"},
            },
            {
                "name": "postgres",
                "command": "npx",
                "args": [
                    "-y",
                    "@modelcontextprotocol/server-postgres",
                    "postgresql://app:${POSTGRES_PASSWORD}@localhost:5432/shop",
                ],
                "env": {
                    "PGPASSWORD": "${POSTGRES_PGPASSWORD}",
                    "PGAPPNAME": "shop$$app $${not a variable} $$HOME",
                },
            },
            {
                "name": "remote",
                "command": "npx",
                "args": [
                    "mcp-remote",
                    "https://mcp.example.com/sse",
                    "--header",
                    "Authorization: Bearer ${REMOTE_AUTHORIZATION}",
                ],
            },
            {
                "name": "weather",
                "command": "uvx",
                "args": ["weather-mcp", "--api-key=${WEATHER_API_KEY}", "--units", "metric"],
                "enabled": False,
            },
        ],
        variables={
            "GITHUB_PERSONAL_ACCESS_TOKEN": (True, "ghp_D3skt0pT0k3nF4ke"),
            "POSTGRES_PASSWORD": (True, "pg-Pa55-F4ke"),
            "POSTGRES_PGPASSWORD": (True, "pa$$w0rd"),
            "REMOTE_AUTHORIZATION": (True, "rem0te-T0ken-F4ke"),
            "WEATHER_API_KEY": (True, "we4ther-K3y-F4ke"),
        },
        notes=("ignored top-level keys: globalShortcut, preferences",),
        secrets=(
            "ghp_D3skt0pT0k3nF4ke",
            "pg-Pa55-F4ke",
            "pa$$w0rd",
            "rem0te-T0ken-F4ke",
            "we4ther-K3y-F4ke",
        ),
    ),
    "vscode": Case(
        VSCODE / ".vscode" / "mcp.json",
        servers=[
            {
                "name": "perplexity",
                "command": "npx",
                "args": ["-y", "server-perplexity-ask", "--region", "${REGION:-eu}"],
                "env": {"PERPLEXITY_API_KEY": "${PERPLEXITY_KEY}"},
            },
            {
                "name": "project-tools",
                "command": "python",
                "args": [
                    literal(VSCODE / "tools" / "server.py"),
                    "--cache",
                    literal(HOME) + "/.cache/tools",
                ],
                "cwd": literal(VSCODE),
                "env": {
                    "LOG_DIR": "${MCP_LOG_DIR}",
                    "PROJECT_MODE": "fast",
                    "PROJECT_API_TOKEN": "${PROJECT_API_TOKEN}",
                    "PROJECT_GREETING": "${PROJECT_GREETING}",
                },
            },
            {
                "name": "github",
                "url": "https://api.githubcopilot.com/mcp/",
                "headers": {"Authorization": "Bearer ${GITHUB_MCP_PAT}"},
                "transport": "http",
            },
            {
                "name": "events",
                "url": "http://127.0.0.1:9002/sse",
                "headers": {"X-API-Key": "${EVENTS_X_API_KEY}", "X-Client": "vscode"},
                "transport": "sse",
            },
        ],
        variables={
            "PERPLEXITY_KEY": (True, None),
            "MCP_LOG_DIR": (False, None),
            "PROJECT_API_TOKEN": (True, "env-F1le-T0ken-F4ke"),
            "PROJECT_GREETING": (False, "hello $USER"),
            "GITHUB_MCP_PAT": (True, None),
            "EVENTS_X_API_KEY": (True, "sse-K3y-F4ke"),
        },
        notes=("servers.project-tools.dev",),
        secrets=("env-F1le-T0ken-F4ke", "sse-K3y-F4ke"),
    ),
    "cursor": Case(
        CURSOR / ".cursor" / "mcp.json",
        servers=[
            {"name": "playwright", "command": "npx", "args": ["-y", "@playwright/mcp@latest"]},
            {
                "name": "context7",
                "url": "https://mcp.context7.com/mcp",
                "headers": {"CONTEXT7_API_KEY": "${CONTEXT7_API_KEY}"},
            },
            {
                "name": "notion",
                "url": "https://mcp.example.com/mcp?api_key=${NOTION_API_KEY}&profile=work",
            },
            {
                "name": "local",
                "command": "node",
                "args": [literal(CURSOR / "mcp" / "server.js")],
                "env": {"API_BASE": "${API_BASE}", "PRICE": "5$$"},
            },
        ],
        variables={
            "CONTEXT7_API_KEY": (True, "ctx7-K3y-F4ke"),
            "NOTION_API_KEY": (True, "n0tion-K3y-F4ke"),
            "API_BASE": (False, None),
        },
        secrets=("ctx7-K3y-F4ke", "n0tion-K3y-F4ke"),
    ),
    "claude-code": Case(
        FILES / "claude-code" / ".mcp.json",
        servers=[
            {
                "name": "api-server",
                "url": "${API_BASE_URL:-https://api.example.com}/mcp",
                "headers": {"Authorization": "Bearer ${API_KEY}"},
                "transport": "http",
            },
            {"name": "sentry", "url": "https://mcp.sentry.dev/sse", "transport": "sse"},
            {
                "name": "shared-server",
                "command": "/opt/tools/server",
                "args": ["--config", "${CONFIG_PATH:-./config.json}"],
                "env": {
                    "CACHE_DIR": "/tmp/cache",
                    "SLACK_BOT_TOKEN": "${SHARED_SERVER_SLACK_BOT_TOKEN}",
                },
            },
        ],
        variables={
            "API_KEY": (False, None),
            "SHARED_SERVER_SLACK_BOT_TOKEN": (True, "xoxb-Sl4ck-F4ke"),
        },
        secrets=("xoxb-Sl4ck-F4ke",),
    ),
    "claude-code-user": Case(
        FILES / "claude-code-user" / ".claude.json",
        servers=[
            {
                "name": "memory",
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-memory"],
                "env": {},
            }
        ],
        notes=(
            "ignored top-level keys: autoUpdates, numStartups, projects, theme, tipsHistory,"
            " userID",
        ),
    ),
}

#: The repo's own examples: they must import as they are, with nothing to set.
EXAMPLE_FILES = [
    EXAMPLES / "claude_desktop_config.json",
    EXAMPLES / "claude_desktop_config.http.json",
    EXAMPLES / "mcpServers.json",
    EXAMPLES / "vscode" / "mcp.json",
]


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def output_text(imported: Imported) -> str:
    """Everything `mcp-agg import` prints: the TOML, the notes and the variable list."""
    lines = [imported.toml, *imported.notes]
    lines += [f"{v.name} {v.why}" for v in imported.variables]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the table


def test_import_gives_the_servers(case: Case) -> None:
    imported = import_mcp_servers(case.path)
    raw = tomllib.loads(imported.toml)
    assert raw["servers"] == case.servers
    assert raw["gateway"] == {"name": "mcp-agg"}


def test_import_lists_the_variables_to_set(case: Case) -> None:
    imported = import_mcp_servers(case.path)
    listed = {v.name: (v.secret, v.value) for v in imported.variables}
    assert listed == case.variables
    assert [v.name for v in imported.variables] == list(case.variables)
    for variable in imported.variables:
        assert VALID_NAME.fullmatch(variable.name)
        assert variable.why


def test_import_notes(case: Case) -> None:
    imported = import_mcp_servers(case.path)
    assert len(imported.notes) == len(case.notes)
    for note, expected in zip(imported.notes, case.notes, strict=True):
        assert expected in note


def test_secrets_are_never_printed(case: Case) -> None:
    imported = import_mcp_servers(case.path)
    text = output_text(imported)
    for secret in case.secrets:
        assert secret not in text
        assert secret not in repr(imported)


def test_imported_toml_with_the_variables_set_is_the_file(case: Case, tmp_path: Path) -> None:
    """The imported servers.toml, with each variable set to the value the file had, is the
    same config as the JSON file loaded directly (`serve -c FILE.json`)."""
    imported = import_mcp_servers(case.path)
    asked = {v.name: f"set-{v.name}" for v in imported.variables if v.value is None}
    toml_path = tmp_path / "servers.toml"
    toml_path.write_text(imported.toml, encoding="utf-8")
    from_toml = load_config(
        toml_path, environ={**asked, **{v.name: v.value for v in imported.variables if v.value}}
    )
    from_json = load_config(case.path, environ=asked)
    assert from_toml.servers == from_json.servers


def test_the_file_loaded_directly_keeps_its_values() -> None:
    """Secrets moved out, `$` and envFile values: as the client would have passed them."""
    case = CASES["claude-desktop"]
    config = load_config(case.path, environ={})
    by_name = {s.name: s for s in config.servers}
    source = json.loads(case.path.read_text(encoding="utf-8"))["mcpServers"]
    for name, server in by_name.items():
        assert server.args == source[name]["args"]
        assert server.env == source[name].get("env", {})
    assert by_name["weather"].enabled is False

    vscode = load_config(
        CASES["vscode"].path,
        environ={"PERPLEXITY_KEY": "pk", "GITHUB_MCP_PAT": "gp", "MCP_LOG_DIR": "/logs"},
    )
    tools = {s.name: s for s in vscode.servers}["project-tools"]
    assert tools.env == {
        "LOG_DIR": "/logs",
        "PROJECT_MODE": "fast",  # the server's own env wins over its envFile
        "PROJECT_API_TOKEN": "env-F1le-T0ken-F4ke",
        "PROJECT_GREETING": "hello $USER",
    }
    assert {s.name: s for s in vscode.servers}["perplexity"].args[-1] == "eu"


def test_file_values_win_over_the_environment() -> None:
    """A secret the JSON file holds is the server's, whatever the environment has."""
    config = load_config(
        CASES["claude-desktop"].path, environ={"GITHUB_PERSONAL_ACCESS_TOKEN": "other"}
    )
    github = {s.name: s for s in config.servers}["github"]
    assert github.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_D3skt0pT0k3nF4ke"}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_repo_examples_import_with_nothing_to_set(path: Path) -> None:
    imported = import_mcp_servers(path)
    raw = tomllib.loads(imported.toml)
    assert raw["servers"]
    assert imported.variables == ()
    assert imported.notes == ()
    load_config(path, environ={})


# ---------------------------------------------------------------------------- details


def write_json(folder: Path, data: Any, name: str = "mcp.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def env_of(tmp_path: Path, env: dict[str, str]) -> Imported:
    return import_mcp_servers(
        write_json(tmp_path, {"mcpServers": {"s": {"command": "x", "env": env}}})
    )


@pytest.mark.parametrize(
    ("key", "value", "secret"),
    [
        ("GITHUB_TOKEN", "ghp-0123456789", True),
        ("OPENAI_API_KEY", "sk-0123456789", True),
        ("apiKey", "k-0123456789", True),
        ("AWS_SECRET_ACCESS_KEY", "abc0123456789", True),
        ("PGPASSWORD", "hunter2", True),
        ("DB_PASS", "hunter2", True),
        ("CLIENT_SECRET", "c-0123456789", True),
        ("GITHUB_PAT", "p-0123456789", True),
        ("COOKIE", "sid=0123456789", True),
        ("EXTRA_HEADER", "Bearer 0123456789", True),
        ("MAX_TOKENS", "4096", False),
        ("AWS_ACCESS_KEY_ID", "AKIA0123456789", False),
        ("TOKEN_FILE", "/run/secrets/token", False),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/etc/gcp.json", False),
        ("LOG_LEVEL", "debug", False),
        ("API_KEY", "", False),
        ("API_KEY", "${FROM_THE_ENVIRONMENT}", False),
    ],
)
def test_which_env_values_are_secrets(tmp_path: Path, key: str, value: str, secret: bool) -> None:
    imported = env_of(tmp_path, {key: value})
    env = tomllib.loads(imported.toml)["servers"][0]["env"]
    moved = [v for v in imported.variables if v.secret]
    if secret:
        assert env[key].startswith("${") or env[key].startswith("Bearer ${")
        assert [v.value for v in moved] == [value.removeprefix("Bearer ")]
        assert value.removeprefix("Bearer ") not in output_text(imported)
    else:
        assert env[key] == value
        assert moved == []


def test_generated_names_are_valid_unique_and_stable(tmp_path: Path) -> None:
    path = write_json(
        tmp_path,
        {
            "mcpServers": {
                "my server!": {"command": "x", "env": {"apiKey": "k1-0123456789"}},
                "1password": {"command": "x", "env": {"OP_TOKEN": "k2-0123456789"}},
                "x": {"command": "x", "env": {"API_KEY": "k3-0123456789"}},
                "y": {"command": "x", "args": ["${X_API_KEY}"]},
                "x-api": {"command": "x", "env": {"KEY": "k4-0123456789"}},
            }
        },
    )
    first = import_mcp_servers(path)
    names = [v.name for v in first.variables if v.secret]
    assert names == ["MY_SERVER_API_KEY", "_1PASSWORD_OP_TOKEN", "X_API_KEY_2", "X_API_KEY_3"]
    assert all(VALID_NAME.fullmatch(n) for n in names)
    assert import_mcp_servers(path) == first


def test_the_same_input_is_one_variable(tmp_path: Path) -> None:
    path = write_json(
        tmp_path,
        {
            "inputs": [{"type": "promptString", "id": "token", "password": True}],
            "servers": {
                "a": {"type": "http", "url": "https://a/mcp", "headers": {"X": "${input:token}"}},
                "b": {"type": "stdio", "command": "b", "env": {"T": "${input:token}"}},
            },
        },
    )
    imported = import_mcp_servers(path)
    assert [(v.name, v.secret) for v in imported.variables] == [("TOKEN", True)]
    servers = tomllib.loads(imported.toml)["servers"]
    assert servers[0]["headers"] == {"X": "${TOKEN}"}
    assert servers[1]["env"] == {"T": "${TOKEN}"}


@given(text=st.text(alphabet=string.ascii_letters + "$ -}", max_size=20))
@settings(max_examples=200, deadline=None)
def test_dollar_signs_survive_expansion(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    """A value with `$` but no `${`: what the client passed is what the backend gets."""
    folder = tmp_path_factory.mktemp("dollar")
    path = write_json(folder, {"mcpServers": {"s": {"command": "x", "args": [text]}}})
    toml_path = folder / "servers.toml"
    toml_path.write_text(import_mcp_servers(path).toml, encoding="utf-8")
    assert load_config(toml_path, environ={}).servers[0].args == [text]
    assert load_config(path, environ={}).servers[0].args == [text]


def test_jsonc_comments_and_trailing_commas(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        '{\n  // a comment\n  "servers": {\n    /* another */ "a": {"command": "x",'
        ' "args": ["http://h//x", "/* kept */"],},\n  },\n}\n',
        encoding="utf-8",
    )
    servers = tomllib.loads(import_mcp_servers(path).toml)["servers"]
    assert servers == [{"name": "a", "command": "x", "args": ["http://h//x", "/* kept */"]}]


@pytest.mark.parametrize("variable", ["${command:pickFile}", "${config:editor.fontSize}"])
def test_a_vscode_variable_that_cannot_be_translated_is_an_error(
    tmp_path: Path, variable: str
) -> None:
    path = write_json(tmp_path, {"servers": {"a": {"command": "x", "args": ["-f", variable]}}})
    with pytest.raises(ConfigError) as exc_info:
        import_mcp_servers(path)
    assert exc_info.value.loc == "servers.a.args[1]"
    assert variable in exc_info.value.problem


def test_both_mcp_servers_and_servers_is_an_error(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {}, "servers": {}})
    with pytest.raises(ConfigError) as exc_info:
        import_mcp_servers(path)
    assert '"mcpServers" and "servers"' in exc_info.value.problem


def test_a_missing_env_file_is_a_note(tmp_path: Path) -> None:
    path = write_json(
        tmp_path, {"servers": {"a": {"command": "x", "envFile": "${workspaceFolder}/.env"}}}
    )
    imported = import_mcp_servers(path)
    assert tomllib.loads(imported.toml)["servers"] == [{"name": "a", "command": "x"}]
    assert len(imported.notes) == 1
    assert "servers.a.envFile" in imported.notes[0]
    assert str(tmp_path / ".env") in imported.notes[0]


def test_a_relative_env_file_is_in_the_workspace_folder(tmp_path: Path) -> None:
    (tmp_path / ".vscode").mkdir()
    (tmp_path / "dev.env").write_text("A_TOKEN=t-0123456789\n", encoding="utf-8")
    path = write_json(
        tmp_path / ".vscode", {"servers": {"a": {"command": "x", "envFile": "dev.env"}}}
    )
    imported = import_mcp_servers(path)
    assert tomllib.loads(imported.toml)["servers"][0]["env"] == {"A_TOKEN": "${A_TOKEN}"}
    assert [(v.name, v.secret, v.value) for v in imported.variables] == [
        ("A_TOKEN", True, "t-0123456789")
    ]


def test_workspace_folder_is_the_json_folder_outside_vscode_and_cursor(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {"a": {"command": "${workspaceFolder}/run"}}})
    servers = tomllib.loads(import_mcp_servers(path).toml)["servers"]
    assert servers[0]["command"] == literal(tmp_path.resolve()) + "/run"
