"""How a real `mcp-agg` starts: its stdio backends before its imports, a backend's four
lists asked for at once.

The tests read logs, not a clock: the gateway's own (the order of its lines), and the
backends' (backends/slowlists.py holds each list request until all four are in flight and
logs whether they met; backends/answers.py logs the pid that answered a call).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.procs import BACKENDS, PYTHON, mcp_agg, stdio_gateway

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


def test_a_stdio_backend_starts_before_the_gateway_imports_and_serves_its_first_session(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.log"
    config = tmp_path / "servers.toml"
    argv = json.dumps([str(BACKENDS / "answers.py"), "--log-file", str(calls)])
    config.write_text(f'[[servers]]\nname = "answers"\ncommand = "{PYTHON}"\nargs = {argv}\n')
    with (tmp_path / "gateway.log").open("w+b") as stderr:
        with stdio_gateway(config, "--log-level", "info", stderr=stderr) as peer:
            peer.initialize()
            answer = peer.request(
                "tools/call", {"name": "answers_ask", "arguments": {"question": "?"}}, 1
            )
            assert answer["result"]["content"][0]["text"] == "42"
        stderr.seek(0)
        log = stderr.read().decode()
    answered_by = calls.read_text().split()[0]  # "PID start"
    started = re.search(
        r"backend answers-1: started before the gateway's imports \(pid (\d+)\)", log
    )
    assert started is not None, log
    # Started before the MCP stack was imported, and the very process that answered: the
    # first session took it over rather than spawning another.
    assert started.start() < log.index("imported the gateway in ")
    assert started.group(1) == answered_by


def test_initialize_is_answered_while_a_backend_starts_and_the_first_list_waits_for_it(
    tmp_path: Path,
) -> None:
    # The backend starts only once the test creates `gate`: until then nothing the
    # gateway answers can have come from it.
    gate = tmp_path / "gate"
    script = (
        f'while [ ! -e "{gate}" ]; do sleep 0.05; done; exec "{PYTHON}" "{BACKENDS}/answers.py"'
    )
    config = tmp_path / "servers.toml"
    config.write_text(
        f'[gateway]\nconnect_timeout = 60\n\n[[servers]]\nname = "late"\ncommand = "sh"\n'
        f"args = {json.dumps(['-c', script])}\n"
    )
    with stdio_gateway(config) as peer:
        assert peer.initialize()["serverInfo"]["name"]
        assert peer.request("ping", {}, 1) == {"jsonrpc": "2.0", "id": 1, "result": {}}
        peer.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
        gate.touch()
        tools = peer.answer(2, timeout=60)["result"]["tools"]
        assert [tool["name"] for tool in tools] == ["late_ask"]
