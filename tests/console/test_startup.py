"""Tests for mcp_agg.console.startup: what the gateway tells its startup observer, and how the
plain and the live observers show it."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import anyio
import mcp_types
import pytest
from rich.console import Console

from mcp_agg.backend.upstream import Listing, ReplicaState, Upstream
from mcp_agg.config import config_from_raw
from mcp_agg.console import startup
from mcp_agg.console.live import LiveStartup
from mcp_agg.console.startup import (
    LogStartup,
    ReplicaOutcome,
    StartupSummary,
)
from mcp_agg.core import gateway as gateway_module
from mcp_agg.core.gateway import Gateway
from tests import fakes


class Recorder:
    def __init__(self) -> None:
        self.replicas: list[str] = []
        self.outcomes: list[ReplicaOutcome] = []
        self.summary: StartupSummary | None = None

    def starting(self, replicas: Sequence[str]) -> None:
        self.replicas = list(replicas)

    def replica_done(self, outcome: ReplicaOutcome) -> None:
        self.outcomes.append(outcome)

    def ready(self, summary: StartupSummary) -> None:
        self.summary = summary


def three_backends(connect_timeout: float = 0.3) -> Gateway:
    servers = [{"name": name, "command": "python"} for name in ("up", "down", "stuck")]
    raw = {"gateway": {"pin": "off", "connect_timeout": connect_timeout}, "servers": servers}
    return Gateway(config_from_raw(raw, None, {}))


def connected(upstream: Upstream, tools: int) -> None:
    listing = Listing(
        tools=tuple(
            mcp_types.Tool(name=f"t{n}", input_schema={"type": "object"}) for n in range(tools)
        )
    )
    fakes.connected(upstream, listing, session=True)
    upstream.first_attempt.set()


def failed(upstream: Upstream, reason: str) -> None:
    upstream.stats.last_error = reason
    upstream.state = ReplicaState.ERROR
    upstream.first_attempt.set()


async def test_the_observer_hears_each_replicas_outcome_and_the_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gateway_module, "_FIRST_ATTEMPT_MARGIN", 0.2)
    gateway = three_backends()
    up, down, stuck = gateway.upstreams
    recorder = Recorder()
    gateway.startup = recorder

    async def connect_later() -> None:
        await anyio.sleep(0.05)
        connected(up, tools=2)

    failed(down, "[Errno 2] No such file or directory: 'nope'")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(connect_later)
            await gateway.wait_first_attempts(
                gateway.upstreams, gateway.config.gateway.connect_timeout, anyio.Event()
            )
    gateway.catalog = gateway.assemble_catalog(strict=True)
    gateway._log_summary()

    assert recorder.replicas == [up.id, down.id, stuck.id]
    outcomes = {o.replica: o for o in recorder.outcomes}
    assert [o.replica for o in recorder.outcomes] == [down.id, up.id, stuck.id]  # as they ended
    assert (outcomes[up.id].status, outcomes[up.id].tools) == ("connected", 2)
    assert outcomes[down.id].status == "failed"
    assert outcomes[down.id].reason == "[Errno 2] No such file or directory: 'nope'"
    assert outcomes[stuck.id].status == "timed out"
    assert outcomes[stuck.id].seconds >= 0.5  # connect_timeout and the margin
    assert recorder.summary == StartupSummary(
        servers=3,
        unavailable=("down", "stuck"),
        replicas=3,
        connected=1,
        tools=2,
        resources=0,
        templates=0,
        prompts=0,
    )


async def test_a_stopped_gateway_reports_no_timeouts() -> None:
    gateway = three_backends(connect_timeout=30)
    recorder = Recorder()
    gateway.startup = recorder
    stop = anyio.Event()
    stop.set()
    with anyio.fail_after(5):
        await gateway.wait_first_attempts(
            gateway.upstreams, gateway.config.gateway.connect_timeout, stop
        )
    assert recorder.outcomes == []


async def test_a_failure_once_connect_timeout_passed_is_a_timeout() -> None:
    gateway = three_backends(connect_timeout=5)
    upstream = gateway.upstreams[1]
    failed(upstream, "did not connect within connect_timeout (5s)")
    assert ReplicaOutcome.of(upstream, 5.01, 5).status == "timed out"
    assert ReplicaOutcome.of(upstream, 0.2, 5).status == "failed"


def test_plain_lines_one_per_replica_and_the_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcp_agg.console.startup")
    observer = LogStartup()
    observer.starting(["up-0", "down-1"])
    observer.replica_done(ReplicaOutcome("up-0", "connected", 0.42, tools=12))
    observer.replica_done(ReplicaOutcome("down-1", "failed", 0.05, reason="refused"))
    observer.ready(
        StartupSummary(
            servers=2,
            unavailable=("down",),
            replicas=2,
            connected=1,
            tools=12,
            resources=3,
            templates=0,
            prompts=1,
        )
    )
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines[0] == ("INFO", "backend up-0: connected, 12 tools (0.42s)")
    assert lines[1] == (
        "ERROR",
        "backend down-1: failed after 0.05s: refused; retrying in the background",
    )
    level, summary = lines[2]
    assert level == "INFO"
    assert summary.startswith("ready in ")
    assert summary.endswith(
        "s: 1/2 servers, 12 tools, 3 resources, 1 prompt; "
        "unavailable: down (retrying in the background)"
    )
    assert len(lines) == 3


def test_summary_counts_replicas_and_search_mode() -> None:
    summary = StartupSummary(
        servers=2,
        unavailable=(),
        replicas=3,
        connected=3,
        tools=300,
        resources=0,
        templates=0,
        prompts=0,
        searching=True,
    )
    assert summary.describe(1.5) == (
        "ready in 1.50s: 2 servers (3/3 replicas), 300 tools; "
        "tools/list shows the search tools (search mode)"
    )


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_live_display_only_for_http_on_a_terminal() -> None:
    with startup.feedback("http", FakeTerminal()) as observer:
        assert isinstance(observer, LiveStartup)
    with startup.feedback("stdio", FakeTerminal()) as observer:
        assert isinstance(observer, LogStartup)
    with startup.feedback("http", io.StringIO()) as observer:
        assert isinstance(observer, LogStartup)


def test_the_live_display_shows_each_replica_and_keeps_logs_above_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    log = logging.getLogger("mcp_agg.backend.upstream")
    terminal = FakeTerminal()
    console = Console(file=terminal, force_terminal=True, width=120)
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        display = LiveStartup(console)
        display.starting(["up-0", "down-1"])
        log.warning("a warning while connecting")
        log.info("backend up-0 connected: the display says so")
        display.replica_done(ReplicaOutcome("up-0", "connected", 0.4, tools=2))
        display.replica_done(ReplicaOutcome("down-1", "failed", 0.1, reason="refused"))
        display.ready(
            StartupSummary(
                servers=2,
                unavailable=("down",),
                replicas=2,
                connected=1,
                tools=2,
                resources=0,
                templates=0,
                prompts=0,
            )
        )
        assert handler.stream is terminal  # given back
        log.info("after the display")
    finally:
        root.removeHandler(handler)
    out = terminal.getvalue()
    assert "✓" in out
    assert "connected, 2 tools" in out
    assert "✗" in out
    assert "failed after 0.10s: refused" in out
    assert "mcp-agg ready in" in out
    assert "1/2 servers, 2 tools" in out
    assert "a warning while connecting" in out
    assert "the display says so" not in out  # below WARNING: left to the display
    assert "after the display" in out


def test_servers_started_after_the_live_display_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reload that adds a server after startup: log lines, not a second display that
    would keep the logs held back."""
    caplog.set_level(logging.INFO, logger="mcp_agg.console.startup")
    terminal = FakeTerminal()
    display = LiveStartup(Console(file=terminal, force_terminal=True, width=120))
    display.starting(["up-0"])
    display.replica_done(ReplicaOutcome("up-0", "connected", 0.4, tools=2))
    display.close()  # what `ready` does
    shown = terminal.getvalue()
    display.starting(["added-1"])
    display.replica_done(ReplicaOutcome("added-1", "connected", 0.3, tools=5))
    assert terminal.getvalue() == shown  # no display again
    assert ("INFO", "backend added-1: connected, 5 tools (0.30s)") in [
        (r.levelname, r.getMessage()) for r in caplog.records
    ]
