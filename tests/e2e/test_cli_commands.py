"""`mcp-agg tools`, `status` and `call` against real backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.procs import demo_servers, mcp_agg

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "servers.toml"
    renamed = 'rename_tools = { convert = "to" }\nexclude_tools = ["multiply"]'
    path.write_text(
        f"""
[gateway]
connect_timeout = 60
{demo_servers(folder, "notes", "units", units=renamed)}
[[servers]]
name = "broken"
command = "python"
args = ["-c", "import sys; print('broken backend: no config', file=sys.stderr); sys.exit(3)"]
"""
    )
    return path


def test_tools_json_lists_the_merged_catalog(config: Path) -> None:
    done = mcp_agg("tools", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["notes_read_note"]["server"] == "notes"
    assert rows["notes_read_note"]["original_name"] == "read_note"
    assert rows["notes_read_note"]["description"]
    assert rows["units_to"]["original_name"] == "convert"  # renamed
    assert "units_convert" not in rows
    assert "units_multiply" not in rows  # excluded
    assert "units_add" in rows
    assert not any(name.startswith("broken") for name in rows)
    assert "broken-1 unavailable" in done.stderr


def test_tools_table_is_readable(config: Path) -> None:
    done = mcp_agg("tools", "-c", str(config))
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == ["TOOL", "SERVER", "ORIGINAL", "DESCRIPTION"]
    assert any(line.split()[:3] == ["units_to", "units", "convert"] for line in lines)


def test_status_shows_each_replica_and_why_one_failed(config: Path) -> None:
    done = mcp_agg("status", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    replicas = {row["id"]: row for row in json.loads(done.stdout)}
    assert replicas["notes-1"]["state"] == "connected"
    assert replicas["notes-1"]["tools"] == 5
    assert replicas["units-1"]["state"] == "connected"
    assert replicas["broken-1"]["state"] == "error"
    assert "broken backend: no config" in replicas["broken-1"]["last_error"]


def test_status_json_of_a_backend_that_exited_shows_its_exit_code_and_no_health(
    config: Path,
) -> None:
    done = mcp_agg("status", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    broken = {row["id"]: row for row in json.loads(done.stdout)}["broken-1"]
    # Between its failed attempts it is "error", during the next one "connecting": never up.
    assert broken["state"] in {"error", "connecting"}
    assert broken["health"] != "ok"
    assert broken["healthy"] is False
    assert broken["exit_code"] == 3
    assert "exit code 3" in broken["last_error"]
    assert "broken backend: no config" in broken["last_error"]


def test_status_table_of_a_backend_that_exited_shows_its_exit_code_and_no_health(
    config: Path,
) -> None:
    done = mcp_agg("status", "-c", str(config))
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    row = next(line for line in lines if line.startswith("broken-1 "))
    # Every column but the last (LAST ERROR) is one word.
    cells = dict(zip(header.split()[:-2], row.split(), strict=False))
    assert cells["STATE"] in {"error", "connecting"}  # retried: never up
    assert cells["HEALTH"] != "ok"
    assert "exit code 3" in row


def test_call_prints_the_result(config: Path) -> None:
    done = mcp_agg("call", "units_add", "--args", '{"a": 1.5, "b": 2}', "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3.5"


def test_call_of_a_failing_tool_exits_1_with_its_error(config: Path) -> None:
    done = mcp_agg("call", "units_divide", "--args", '{"a": 1, "b": 0}', "-c", str(config))
    assert done.returncode == 1
    assert done.stdout.strip() == "division by zero"


def test_call_with_bad_json_is_a_usage_error(config: Path) -> None:
    done = mcp_agg("call", "units_add", "--args", "{not json", "-c", str(config))
    assert done.returncode == 2
    assert "--args" in done.stderr
