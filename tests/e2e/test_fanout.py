"""Fan-out tools through a real `mcp-agg serve` over HTTP, with real backends behind it.

One gateway serves the whole module: backends that answer 42, 42 and 41 (the last over
HTTP), one whose tool fails, one that takes two minutes, and a group of three stdio
replicas; the fan-outs over them cover every strategy.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
import pytest_asyncio
from fastmcp import Client

from tests.e2e.procs import BACKENDS, PYTHON, backend_process, free_port, served_gateway, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ANSWERS = BACKENDS / "answers.py"
META = "mcp-agg/fanout"


def server(name: str, *args: str, extra: str = "") -> str:
    argv = json.dumps([str(ANSWERS), *args])
    return f'[[servers]]\nname = "{name}"\ncommand = "{PYTHON}"\nargs = {argv}\n{extra}\n'


@dataclass(frozen=True)
class Setup:
    url: str
    slow_log: Path
    stderr: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("fanout")
    slow_log, stderr = folder / "slow.log", folder / "gateway.err"
    port = free_port()
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 30

{server("fast")}
{server("same")}
[[servers]]
name = "other"
url = "http://127.0.0.1:{port}/mcp"

{server("broken", "--fail")}
{server("slow", "--delay", "120", "--log-file", str(slow_log))}
{server("reps", "--structured", extra="replicas = 3")}

[[fanout]]
name = "first"
targets = ["slow_ask", "broken_ask", "fast_ask"]
strategy = "first-success"

[[fanout]]
name = "every"
description = "Ask everyone"
targets = ["fast_ask", "broken_ask", "slow_ask", "nosuch_ask"]
strategy = "all-wait"
timeout = 3

[[fanout]]
name = "vote"
targets = ["fast_ask", "same_ask", "other_ask"]
strategy = "majority-vote"

[[fanout]]
name = "split"
targets = ["fast_ask", "other_ask", "broken_ask"]
strategy = "majority-vote"

[[fanout]]
name = "replicas"
group = "reps"
tool = "ask"

[[fanout]]
name = "replica_vote"
group = "reps"
tool = "ask"
strategy = "majority-vote"

[[fanout]]
name = "ghost"
targets = ["nosuch_a", "nosuch_b"]
"""
    )
    with (
        backend_process(ANSWERS, "--answer", "41", "--transport", "http", port=port),
        stderr.open("wb") as err,
        served_gateway(config, stderr=err) as (url, _),
    ):
        yield Setup(url, slow_log, stderr)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(setup: Setup) -> AsyncIterator[Client[Any]]:
    async with Client(setup.url, mode="legacy", timeout=30) as connected:
        yield connected


async def call(client: Client[Any], name: str) -> tuple[mcp_types.CallToolResult, float]:
    started = time.monotonic()
    result = await client.call_tool_mcp(name, {"question": "the answer?"})
    return result, time.monotonic() - started


def texts(result: mcp_types.CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]


def meta(result: mcp_types.CallToolResult) -> dict[str, Any]:
    assert result.meta is not None
    found: dict[str, Any] = result.meta[META]
    return found


def cancellations(log: Path) -> int:
    return log.read_text().count(" cancelled") if log.exists() else 0


async def test_fanouts_are_listed(client: Client[Any], setup: Setup) -> None:
    tools = {tool.name: tool for tool in await client.list_tools()}
    assert "ghost" not in tools  # no target available
    assert {"first", "every", "vote", "split", "replicas", "replica_vote"} <= set(tools)
    assert tools["every"].description == "Ask everyone"
    assert tools["vote"].input_schema == tools["fast_ask"].input_schema
    assert tools["vote"].output_schema is None
    assert tools["vote"].annotations is not None
    assert tools["vote"].annotations.read_only_hint is True  # every target is read-only
    # A target left out might not be read-only.
    assert tools["every"].annotations is not None
    assert tools["every"].annotations.read_only_hint is False
    logged = setup.stderr.read_text()
    assert "fan-out 'every': unknown target 'nosuch_ask'" in logged
    assert "fan-out 'ghost': no target available: the tool is left out" in logged


async def test_first_success_cancels_the_slow_target(client: Client[Any], setup: Setup) -> None:
    before = cancellations(setup.slow_log)
    result, took = await call(client, "first")
    assert not result.is_error
    assert texts(result) == ["42"]
    found = meta(result)
    assert found["winner"] == "fast_ask"
    assert "slow_ask" in found["cancelled"]
    assert found["latencies_ms"]["slow_ask"] is None
    assert isinstance(found["latencies_ms"]["fast_ask"], float)
    assert took < 15  # not the slow target's two minutes
    # The slow backend's own call was cancelled, not left running.
    await anyio.to_thread.run_sync(
        wait_until, lambda: cancellations(setup.slow_log) > before, 10, "the slow call cancelled"
    )


async def test_all_wait_labels_each_target(client: Client[Any], setup: Setup) -> None:
    before = cancellations(setup.slow_log)
    result, took = await call(client, "every")
    assert not result.is_error  # one target answered
    shown = texts(result)
    assert shown[:3] == ["[fast_ask] ok", "42", "[broken_ask] error"]
    assert "cannot answer 'the answer?'" in shown[3]
    assert shown[4] == "[slow_ask] error: no answer within the fan-out's timeout (3s); cancelled"
    assert shown[5] == (
        "[nosuch_ask] error: not in the catalog: no server offers a tool of that name"
    )
    assert result.structured_content is not None
    results = result.structured_content["results"]
    assert results["fast_ask"] == {"isError": False, "structuredContent": None, "text": "42"}
    assert results["broken_ask"]["isError"] is True
    found = meta(result)
    assert (found["contacted"], found["successful"], found["failed"]) == (3, 1, 3)
    assert found["latencies_ms"]["slow_ask"] is None
    assert found["latencies_ms"]["nosuch_ask"] is None
    assert 3 <= took < 15
    await anyio.to_thread.run_sync(
        wait_until, lambda: cancellations(setup.slow_log) > before, 10, "the slow call cancelled"
    )


async def test_majority_two_of_three(client: Client[Any]) -> None:
    result, _ = await call(client, "vote")
    assert not result.is_error
    shown = texts(result)
    assert shown[0] == "42"
    assert shown[-1].startswith("[majority] 2 of 3 targets agreed: fast_ask, same_ask")
    found = meta(result)
    assert found["agreed"] == 2
    assert found["votes"][0]["targets"] == ["fast_ask", "same_ask"]


async def test_no_majority_is_an_error(client: Client[Any]) -> None:
    result, _ = await call(client, "split")
    assert result.is_error
    message = texts(result)[0]
    assert "no majority: 2 of the 3 targets contacted had to agree" in message
    assert "- 1 answered 42: fast_ask" in message
    assert "- 1 answered 41: other_ask" in message
    assert "- broken_ask failed:" in message


async def test_group_fanout_calls_every_replica(client: Client[Any]) -> None:
    result, _ = await call(client, "replicas")
    assert not result.is_error
    assert result.structured_content is not None
    results = result.structured_content["results"]
    assert list(results) == ["reps-1", "reps-2", "reps-3"]
    assert all(r["structuredContent"] == {"answer": "42"} for r in results.values())
    # Each replica answered its own call: three different processes.
    assert len({r["text"] for r in results.values()}) == 3
    assert meta(result)["successful"] == 3


async def test_group_majority_compares_structured_content(client: Client[Any]) -> None:
    # Their texts differ (each names its pid); their structured answers agree.
    result, _ = await call(client, "replica_vote")
    assert not result.is_error
    assert result.structured_content == {"answer": "42"}
    assert meta(result)["agreed"] >= 2


async def test_tools_command_lists_fanouts(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""{server("a")}
{server("b")}
[[fanout]]
name = "both"
targets = ["a_ask", "b_ask"]
"""
    )

    async def tools(*args: str) -> str:
        command = [PYTHON, "-m", "mcp_agg", "tools", "-c", str(config), *args]
        with anyio.fail_after(60):
            done = await anyio.run_process(command, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    rows = {row["name"]: row for row in json.loads(await tools("--json"))}
    assert rows["both"]["server"] == "fanout"
    assert rows["both"]["original_name"] is None
    assert rows["both"]["annotations"] == {"readOnlyHint": True}
    assert rows["a_ask"]["original_name"] == "ask"
    table = (await tools()).splitlines()
    line = next(line for line in table if line.startswith("both "))
    assert line.split()[1:3] == ["fanout", "-"]
