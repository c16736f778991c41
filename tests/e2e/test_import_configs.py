"""`mcp-agg import` on the client configs people have, then `mcp-agg check` on its output.

The real CLI, as a user runs it: the TOML on stdout, notes and the variables to set on
stderr, no secret in clear on either; `check` fails until the listed variables are set and
passes once they are. A real backend runs the same from the JSON file and from the TOML.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from tests.e2e.procs import REPO, SERVERS, mcp_agg

pytestmark = pytest.mark.e2e

FILES = REPO / "tests" / "config" / "mcpjson"

#: Each file, and the values it holds in clear (its own, or its envFile's).
CASES: dict[str, tuple[Path, tuple[str, ...]]] = {
    "claude-desktop": (
        FILES / "claude-desktop" / "claude_desktop_config.json",
        (
            "ghp_D3skt0pT0k3nF4ke",
            "pg-Pa55-F4ke",
            "pa$$w0rd",
            "rem0te-T0ken-F4ke",
            "we4ther-K3y-F4ke",
        ),
    ),
    "vscode": (
        FILES / "vscode-workspace" / ".vscode" / "mcp.json",
        ("env-F1le-T0ken-F4ke", "sse-K3y-F4ke"),
    ),
    "cursor": (FILES / "cursor-project" / ".cursor" / "mcp.json", ("ctx7-K3y-F4ke",)),
    "claude-code": (FILES / "claude-code" / ".mcp.json", ("xoxb-Sl4ck-F4ke",)),
    "claude-code-user": (FILES / "claude-code-user" / ".claude.json", ()),
    "example-claude-desktop": (REPO / "examples" / "claude_desktop_config.json", ()),
    "example-claude-desktop-http": (REPO / "examples" / "claude_desktop_config.http.json", ()),
    "example-mcpServers": (REPO / "examples" / "mcpServers.json", ()),
    "example-vscode": (REPO / "examples" / "vscode" / "mcp.json", ()),
}


def listed_variables(stderr: str) -> list[str]:
    """The names `import` asks to set: the indented lines after its heading on stderr."""
    lines = stderr.splitlines()
    heading = [i for i, line in enumerate(lines) if "environment variables" in line]
    if not heading:
        return []
    names = []
    for line in lines[heading[0] + 1 :]:
        if not line.startswith("  "):
            break
        names.append(line.split()[0])
    return names


@pytest.mark.parametrize("name", list(CASES))
def test_import_then_check(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, secrets = CASES[name]
    done = mcp_agg("import", str(path))
    assert done.returncode == 0, done.stderr
    raw = tomllib.loads(done.stdout)
    assert raw["servers"]
    for secret in secrets:
        assert secret not in done.stdout
        assert secret not in done.stderr

    out = tmp_path / "servers.toml"
    out.write_text(done.stdout, encoding="utf-8")
    names = listed_variables(done.stderr)
    for variable in names:
        monkeypatch.delenv(variable, raising=False)
    if names:
        unset = mcp_agg("check", "-c", str(out))
        assert unset.returncode == 2, unset.stdout
        assert "is not set" in unset.stderr

    for variable in names:
        monkeypatch.setenv(variable, f"set-{variable}")
    checked = mcp_agg("check", "-c", str(out))
    assert checked.returncode == 0, checked.stderr
    enabled = [s for s in raw["servers"] if s.get("enabled", True)]
    assert f"{len(enabled)} servers" in checked.stdout


def test_import_notes_ignored_keys_on_stderr() -> None:
    path, _ = CASES["claude-desktop"]
    done = mcp_agg("import", str(path))
    assert done.returncode == 0, done.stderr
    assert "globalShortcut" in done.stderr
    assert "preferences" in done.stderr
    assert "globalShortcut" not in done.stdout


def test_a_vscode_workspace_runs_as_json_and_as_imported_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real backend started from `.vscode/mcp.json` (`${workspaceFolder}`, a `$` in a path,
    a token in clear) gets the same folder whether the gateway reads the JSON file or the
    imported servers.toml with the listed variables set."""
    workspace = tmp_path / "workspace"
    (workspace / ".vscode").mkdir(parents=True)
    shutil.copy(SERVERS / "notes.py", workspace / "notes.py")
    config = workspace / ".vscode" / "mcp.json"
    token = "n0tes-T0ken-F4ke"
    config.write_text(
        "{\n  // the notes demo server of this workspace\n"
        + json.dumps(
            {
                "servers": {
                    "notes": {
                        "type": "stdio",
                        "command": "python",
                        "args": ["${workspaceFolder}/notes.py"],
                        "env": {
                            "NOTES_DIR": "${workspaceFolder}/pa$$w0rd notes",
                            "NOTES_TOKEN": token,
                        },
                    }
                }
            }
        )[1:],
        encoding="utf-8",
    )
    notes = workspace / "pa$$w0rd notes"

    direct = mcp_agg(
        "call", "notes_add_note", "--args", '{"title": "a", "body": "x"}', "-c", str(config)
    )
    assert direct.returncode == 0, direct.stderr
    assert (notes / "a.md").read_text(encoding="utf-8") == "x"

    done = mcp_agg("import", str(config))
    assert done.returncode == 0, done.stderr
    assert token not in done.stdout + done.stderr
    assert listed_variables(done.stderr) == ["NOTES_TOKEN"]
    out = tmp_path / "servers.toml"
    out.write_text(done.stdout, encoding="utf-8")
    monkeypatch.setenv("NOTES_TOKEN", token)
    imported = mcp_agg(
        "call", "notes_add_note", "--args", '{"title": "b", "body": "y"}', "-c", str(out)
    )
    assert imported.returncode == 0, imported.stderr
    assert sorted(p.name for p in notes.iterdir()) == ["a.md", "b.md"]
