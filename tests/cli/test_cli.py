"""Tests for the `mcp-agg` command line, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_JSON = REPO / "examples" / "mcpServers.json"
SCRIPT = Path(sys.executable).parent / "mcp-agg"
TIMEOUT = 60

VALID_TOML = """\
[gateway]
name = "test"

[[servers]]
name = "notes"
command = "python"
args = ["notes.py"]

[[servers]]
name = "calc"
command = "python"
args = ["calc.py"]
replicas = 2
"""

INVALID_TOML = """\
[[servers]]
name = "notes"
command = "python"
argz = ["notes.py"]
"""


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, program: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MCP_AGG_CONFIG"}
    environ.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    environ.update(env or {})
    return subprocess.run(
        [*(program or [sys.executable, "-m", "mcp_agg"]), *args],
        cwd=cwd,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


# ---------------------------------------------------------------------------- help


def test_help_lists_the_six_commands(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path, program=[str(SCRIPT)])
    assert result.returncode == 0, result.stderr
    for command in ("serve", "tools", "status", "call", "check", "import"):
        assert command in result.stdout


def test_module_help_lists_the_six_commands(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "tools", "status", "call", "check", "import"):
        assert command in result.stdout


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""


# ---------------------------------------------------------------------------- check


def test_check_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(VALID_TOML, encoding="utf-8")
    result = run("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert str(path) in result.stdout
    assert "2 servers, 3 replicas" in result.stdout


def test_check_finds_servers_toml_in_the_current_folder(tmp_path: Path) -> None:
    (tmp_path / "servers.toml").write_text(VALID_TOML, encoding="utf-8")
    result = run("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_reads_the_env_var(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(VALID_TOML, encoding="utf-8")
    result = run("check", cwd=tmp_path, env={"MCP_AGG_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout


def test_check_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(INVALID_TOML, encoding="utf-8")
    result = run("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(path) in result.stderr
    assert "servers[0] (notes).argz" in result.stderr
    assert "unknown key" in result.stderr


def test_check_unset_variable(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(
        '[[servers]]\nname = "a"\ncommand = "x"\nenv = { T = "${MCP_AGG_TEST_UNSET_VAR}" }\n',
        encoding="utf-8",
    )
    result = run("check", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "MCP_AGG_TEST_UNSET_VAR" in result.stderr
    assert "servers[0].env.T" in result.stderr
    assert str(path) in result.stderr


def test_check_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = run("check", "-c", str(missing), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(missing) in result.stderr
    assert "no config file" in result.stderr


def test_check_no_config_anywhere(tmp_path: Path) -> None:
    result = run("check", cwd=tmp_path)
    assert result.returncode == 2
    assert "servers.toml" in result.stderr
    assert "no config file" in result.stderr


# ---------------------------------------------------------------------------- import


def test_import_example_then_check_accepts_it(tmp_path: Path) -> None:
    result = run("import", str(EXAMPLE_JSON), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    raw = tomllib.loads(result.stdout)
    source = json.loads(EXAMPLE_JSON.read_text(encoding="utf-8"))
    assert [s["name"] for s in raw["servers"]] == list(source["mcpServers"])
    for server in raw["servers"]:
        entry = source["mcpServers"][server["name"]]
        assert server["command"] == entry["command"]
        assert server["args"] == entry["args"]

    # The script paths are relative and do not exist next to the written file;
    # `check` starts nothing, so it must pass anyway.
    out = tmp_path / "servers.toml"
    out.write_text(result.stdout, encoding="utf-8")
    checked = run("check", "-c", str(out), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "ok" in checked.stdout
    n = len(source["mcpServers"])
    assert f"{n} servers, {n} replicas" in checked.stdout


def test_import_keeps_variable_references(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "remote": {
                        "type": "streamable-http",
                        "url": "https://example.com/mcp",
                        "headers": {"Authorization": "Bearer ${MCP_AGG_TEST_UNSET_TOKEN}"},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    result = run("import", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    raw = tomllib.loads(result.stdout)
    assert raw["servers"] == [
        {
            "name": "remote",
            "url": "https://example.com/mcp",
            "headers": {"Authorization": "Bearer ${MCP_AGG_TEST_UNSET_TOKEN}"},
            "transport": "http",
        }
    ]


def test_import_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"mcpServers": {"x": ', encoding="utf-8")
    result = run("import", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(path) in result.stderr
    assert "invalid JSON" in result.stderr


def test_import_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"mcpServers": {"x": {"command": "a", "cmd": "b"}}}))
    result = run("import", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "mcpServers.x.cmd" in result.stderr
    assert "unknown key" in result.stderr


def test_import_missing_file(tmp_path: Path) -> None:
    result = run("import", str(tmp_path / "absent.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "absent.json" in result.stderr


# ---------------------------------------------------------------------------- serve


def test_serve_invalid_config_fails_fast_and_keeps_stdout_clean(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(INVALID_TOML, encoding="utf-8")
    result = run("serve", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert str(path) in result.stderr
    assert "servers[0] (notes).argz" in result.stderr
    assert "unknown key" in result.stderr


def test_serve_missing_config_fails_fast_and_keeps_stdout_clean(tmp_path: Path) -> None:
    result = run("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "no config file" in result.stderr
