"""Hot reload with real processes: SIGHUP to a served HTTP gateway, and `serve --watch`
on the stdio front.

One client session lives through every reload of the HTTP gateway: servers are added
(the client is told, and sees and calls their tools), removed while calls are in
flight (to another server, and to the one removed: both complete), and a broken
config is refused while the gateway serves on.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp.shared.exceptions import MCPError

from tests.e2e import procs
from tests.e2e.procs import BACKENDS, PYTHON, demo_servers, pids_with_arg, served_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FAULTY = BACKENDS / "faulty.py"


class ListChanged(MessageHandler):
    def __init__(self) -> None:
        self.tools = 0

    async def on_tool_list_changed(self, message: mcp_types.ToolListChangedNotification) -> None:
        self.tools += 1


def write_config(
    folder: Path, *, notes: bool = False, hold: bool = True, broken: bool = False
) -> None:
    """units always (with an unknown key when `broken`); hold (faulty.py, which holds
    calls while its mode file says `hold`) and notes when asked."""
    text = f"""
[gateway]
connect_timeout = 30
request_timeout = 30
{demo_servers(folder, "units", units="argz = []" if broken else "")}"""
    if hold:
        text += f"""
[[servers]]
name = "hold"
command = "python"
args = ["{FAULTY}", "--replica", "h", "--count-file", "{folder / "counts.txt"}",
        "--mode-file", "{folder / "mode.txt"}"]
"""
    if notes:
        text += demo_servers(folder, "notes")
    (folder / "servers.toml").write_text(text)


@dataclass
class Reloading:
    """A served HTTP gateway whose config the test rewrites, and one client of it."""

    folder: Path
    proc: subprocess.Popen[bytes]
    client: Client[Any]
    handler: ListChanged

    @property
    def mode(self) -> Path:
        return self.folder / "mode.txt"

    def reload(self, **servers: bool) -> None:
        write_config(self.folder, **servers)
        self.proc.send_signal(signal.SIGHUP)

    async def tools(self) -> set[str]:
        return {tool.name for tool in await self.client.list_tools()}

    def echoes_started(self) -> int:
        counts = self.folder / "counts.txt"
        lines = counts.read_text().splitlines() if counts.exists() else []
        return sum(1 for line in lines if line.split()[1] == "echo")

    def logged(self) -> str:
        return (self.folder / "gateway.log").read_text()


#: A reload starts and stops backends: twice the usual deadline.
eventually = functools.partial(procs.eventually, timeout=30.0)


async def has_tools(
    gateway: Reloading, present: set[str], absent: frozenset[str] = frozenset()
) -> bool:
    tools = await gateway.tools()
    return present <= tools and not tools & absent


async def unknown_tool(client: Client[Any], name: str) -> bool:
    try:
        result = await client.call_tool_mcp(name, {"text": "x"})
    except MCPError as exc:
        return "unknown tool" in str(exc).lower()
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    return bool(result.is_error) and "unknown tool" in text.lower()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, str, subprocess.Popen[bytes]]]:
    folder = tmp_path_factory.mktemp("reload")
    write_config(folder, hold=True)
    with (
        (folder / "gateway.log").open("wb") as stderr,
        served_gateway(folder / "servers.toml", stderr=stderr) as (url, proc),
    ):
        yield folder, url, proc


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gateway(
    served: tuple[Path, str, subprocess.Popen[bytes]],
) -> AsyncIterator[Reloading]:
    folder, url, proc = served
    handler = ListChanged()
    # The handshake era: the gateway tells it of changes unasked (tools/list_changed).
    client: Client[Any] = Client(
        StreamableHttpTransport(url), mode="legacy", message_handler=handler, timeout=60
    )
    async with client:
        session = client.transport.get_session_id()
        assert session
        yield Reloading(folder, proc, client, handler)
        # Every reload happened under this one session.
        assert client.transport.get_session_id() == session
        assert not (await client.call_tool_mcp("units_add", {"a": 1, "b": 1})).is_error


async def test_sighup_adds_a_server_whose_tools_the_client_is_told_of(gateway: Reloading) -> None:
    await eventually(lambda: has_tools(gateway, {"units_add", "hold_echo"}), "the first config")
    told = gateway.handler.tools
    gateway.reload(notes=True)
    await eventually(lambda: gateway.handler.tools > told, "tools/list_changed")
    assert {"notes_add_note", "notes_list_notes", "units_add", "hold_echo"} <= await gateway.tools()
    result = await gateway.client.call_tool_mcp(
        "notes_add_note", {"title": "reloaded", "body": "hot"}
    )
    assert not result.is_error
    assert (gateway.folder / "notes").is_dir()


async def test_removing_a_server_leaves_a_call_to_another_one_in_flight(
    gateway: Reloading,
) -> None:
    gateway.reload(notes=True)
    await eventually(lambda: has_tools(gateway, {"notes_add_note", "hold_echo"}), "notes")
    gateway.mode.write_text("hold")
    started = gateway.echoes_started()
    async with anyio.create_task_group() as tg:
        results: list[mcp_types.CallToolResult] = []

        async def call() -> None:
            results.append(await gateway.client.call_tool_mcp("hold_echo", {"text": "survived"}))

        tg.start_soon(call)
        await eventually(lambda: gateway.echoes_started() > started, "the call to reach hold")
        gateway.reload(notes=False)
        await eventually(
            lambda: has_tools(gateway, {"hold_echo"}, frozenset({"notes_add_note"})),
            "notes to be removed",
        )
        assert not results  # still held by the backend
        gateway.mode.write_text("ok")
    (result,) = results
    assert not result.is_error
    assert result.content[0].text == "survived"  # type: ignore[union-attr]


async def test_removing_the_server_of_a_call_in_flight_drains_it(gateway: Reloading) -> None:
    gateway.reload(hold=True)
    await eventually(lambda: has_tools(gateway, {"hold_echo"}), "hold")
    await eventually(lambda: pids_with_arg(str(gateway.mode)), "the hold backend process")
    gateway.mode.write_text("hold")
    started = gateway.echoes_started()
    async with anyio.create_task_group() as tg:
        results: list[mcp_types.CallToolResult] = []

        async def call() -> None:
            results.append(await gateway.client.call_tool_mcp("hold_echo", {"text": "drained"}))

        tg.start_soon(call)
        await eventually(lambda: gateway.echoes_started() > started, "the call to reach hold")
        gateway.reload(hold=False)
        # Out of the catalog at once: new calls are refused, the one in flight is not.
        await eventually(
            lambda: has_tools(gateway, {"units_add"}, frozenset({"hold_echo"})), "hold to go"
        )
        assert await unknown_tool(gateway.client, "hold_echo")
        assert pids_with_arg(str(gateway.mode))  # draining: its backend still runs
        assert not results
        gateway.mode.write_text("ok")
    (result,) = results
    assert not result.is_error
    assert result.content[0].text == "drained"  # type: ignore[union-attr]
    # Then the drained server is stopped and its process reaped.
    await eventually(lambda: not pids_with_arg(str(gateway.mode)), "the hold backend to end")


async def test_a_broken_config_is_refused_and_the_gateway_serves_on(gateway: Reloading) -> None:
    gateway.reload(hold=False)
    await eventually(lambda: has_tools(gateway, {"units_add"}), "units")
    before = await gateway.tools()
    gateway.reload(hold=True, broken=True)
    await eventually(lambda: "config reload failed" in gateway.logged(), "the reload error")
    assert "servers[0] (units).argz: unknown key" in gateway.logged()
    result = await gateway.client.call_tool_mcp("units_add", {"a": 2, "b": 3})
    assert not result.is_error
    assert result.structured_content == {"result": 5.0}
    assert await gateway.tools() == before  # hold was not added from the broken file
    assert gateway.proc.poll() is None


# ---------------------------------------------------------------------------- --watch


async def test_watch_reloads_a_changed_file_on_the_stdio_front(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    units = demo_servers(tmp_path, "units")
    config.write_text(units)
    handler = ListChanged()
    transport = StdioTransport(
        command=PYTHON,
        args=["-m", "mcp_agg", "serve", "-c", str(config), "--watch"],
        keep_alive=False,
    )
    async with Client(transport, mode="legacy", message_handler=handler, timeout=60) as client:
        assert "units_add" in {t.name for t in await client.list_tools()}
        # Saved as editors do: written aside, then renamed over the file.
        aside = tmp_path / "servers.toml.swp"
        aside.write_text(units + demo_servers(tmp_path, "notes"))
        os.replace(aside, config)
        await eventually(lambda: handler.tools > 0, "tools/list_changed")
        names = {t.name for t in await client.list_tools()}
        assert {"units_add", "notes_add_note"} <= names
        result = await client.call_tool_mcp("notes_list_notes", {})
        assert not result.is_error
