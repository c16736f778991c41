"""How a real `mcp-agg` lists a backend at startup: its four lists asked for at once.

The backend (backends/slowlists.py) holds each list request until all four are in flight
and logs whether they met: the test reads that log, not a clock.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.procs import BACKENDS, PYTHON, mcp_agg

pytestmark = pytest.mark.e2e

LISTS = ["prompts/list", "resources/list", "resources/templates/list", "tools/list"]


def test_a_backends_four_lists_are_fetched_at_once(tmp_path: Path) -> None:
    log = tmp_path / "lists.log"
    config = tmp_path / "servers.toml"
    argv = json.dumps([str(BACKENDS / "slowlists.py"), "--log-file", str(log), "--wait", "10"])
    config.write_text(
        f'[gateway]\nconnect_timeout = 60\n\n[[servers]]\nname = "slow"\n'
        f'command = "{PYTHON}"\nargs = {argv}\n'
    )
    done = mcp_agg("tools", "-c", str(config), "--json")
    assert done.returncode == 0, done.stderr
    assert [row["name"] for row in json.loads(done.stdout)] == ["slow_echo"]
    events = log.read_text().splitlines()
    assert sorted(e for e in events if e.startswith("start ")) == [f"start {m}" for m in LISTS]
    # Every list was in flight with the other three (one after another: `alone`, and
    # each of them 10 s late).
    assert sorted(e for e in events if not e.startswith("start ")) == [f"met {m}" for m in LISTS]
