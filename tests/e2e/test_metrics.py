"""Metrics as Prometheus scrapes them: /metrics on the HTTP front, `--metrics-port` beside
a stdio gateway, bearer auth on both, and the gateway's own tools."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.procs import (
    PYTHON,
    demo_servers,
    free_port,
    initialize_params,
    kill_group,
    port_open,
    rpc,
    served_gateway,
    wait_until,
)

pytestmark = pytest.mark.e2e

TOKEN = "metrics-e2e-token-4242"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str, token: str | None = None) -> Samples:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return parse(response.text)


def calls(samples: Samples) -> dict[tuple[str, str, str], float]:
    """mcp_agg_tool_calls_total by (tool, server, outcome)."""
    out = {}
    for (name, labels), value in samples.items():
        if name == "mcp_agg_tool_calls_total":
            got = dict(labels)
            out[(got["tool"], got["server"], got["outcome"])] = value
    return out


def moved(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


# ---------------------------------------------------------------- the HTTP front


@pytest.fixture(scope="module")
def open_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTP gateway without auth, with the gateway's own tools: its /mcp URL."""
    folder = tmp_path_factory.mktemp("metrics")
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
expose_gateway_tools = true
{demo_servers(folder)}
"""
    )
    with served_gateway(config) as (url, _):
        yield url


def metrics_url(mcp_url: str) -> str:
    return mcp_url.removesuffix("/mcp") + "/metrics"


async def test_counters_move_by_exactly_the_calls_made(open_gateway: str) -> None:
    async with Client(StreamableHttpTransport(open_gateway), mode="legacy", timeout=30) as client:
        listed = await client.list_tools()
        before = await scrape(metrics_url(open_gateway))
        assert (await client.call_tool_mcp("units_add", {"a": 1, "b": 2})).is_error is False
        assert (await client.call_tool_mcp("units_add", {"a": 2, "b": 2})).is_error is False
        assert (await client.call_tool_mcp("units_divide", {"a": 1, "b": 0})).is_error is True
        assert (await client.call_tool_mcp("notes_list_notes", {})).is_error is False
        unknown = await client.call_tool_mcp("no_such_tool", {})
        assert unknown.is_error is True
        after = await scrape(metrics_url(open_gateway))

    assert moved(calls(before), calls(after)) == {
        ("units_add", "units", "ok"): 2,
        ("units_divide", "units", "tool_error"): 1,
        ("notes_list_notes", "notes", "ok"): 1,
        ("", "", "unknown_tool"): 1,
    }
    count = "mcp_agg_tool_call_duration_seconds_count"
    durations = {dict(labels)["server"]: v for (name, labels), v in after.items() if name == count}
    old = {dict(labels)["server"]: v for (name, labels), v in before.items() if name == count}
    assert moved(old, durations) == {"units": 3, "notes": 1}
    for server in ("units", "notes"):
        replica = {"server": server, "replica": f"{server}-1"}
        assert sample(after, "mcp_agg_replica_up", **replica) == 1
        assert sample(after, "mcp_agg_replica_breaker_state", **replica, state="closed") == 1
        assert sample(after, "mcp_agg_replica_in_flight_requests", **replica) == 0
        assert sample(after, "mcp_agg_replica_requests_total", **replica) >= 1
    assert sample(after, "mcp_agg_catalog_items", kind="tools") == len(listed)
    assert sample(after, "mcp_agg_retries_total", server="units") == 0


async def test_metrics_route_is_behind_the_host_guard(open_gateway: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.get(metrics_url(open_gateway), headers={"Host": "evil.example.com"})
        origin = await http.get(metrics_url(open_gateway), headers={"Origin": "https://evil.io"})
    assert refused.status_code == 403
    assert origin.status_code == 403
    assert "mcp_agg" not in refused.text


async def test_gateway_tools_are_listed_and_report_every_replica(open_gateway: str) -> None:
    async with Client(StreamableHttpTransport(open_gateway), mode="legacy", timeout=30) as client:
        tools = {t.name: t for t in await client.list_tools()}
        health = await client.call_tool_mcp("gateway_health", {})
        metrics = await client.call_tool_mcp("gateway_metrics", {})
    for name in ("gateway_health", "gateway_metrics"):
        annotations = tools[name].annotations
        assert annotations is not None
        assert annotations.read_only_hint is True
    assert not health.is_error
    assert health.structured_content is not None
    replicas = {r["id"]: r for r in health.structured_content["replicas"]}
    assert set(replicas) == {"notes-1", "units-1"}
    assert all(r["state"] == "connected" and r["breaker"] == "closed" for r in replicas.values())
    (text,) = health.content
    assert isinstance(text, mcp_types.TextContent)
    assert json.loads(text.text) == health.structured_content
    assert metrics.structured_content is not None
    assert metrics.structured_content["tools"]["gateway_health"]["server"] == "gateway"


# ---------------------------------------------------------------- auth and --metrics-port


def test_with_auth_both_listeners_need_a_token_and_stop_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    config.write_text(
        """
[gateway.auth]
type = "bearer"
tokens = [{ token = "${SCRAPE_TOKEN}", client_id = "prometheus" }]
"""
    )
    ops_port = free_port()
    env = {"SCRAPE_TOKEN": TOKEN}
    with served_gateway(config, "--metrics-port", str(ops_port), env=env) as (url, proc):
        for endpoint in (metrics_url(url), f"http://127.0.0.1:{ops_port}/metrics"):
            assert httpx.get(endpoint).status_code == 401
            wrong = httpx.get(endpoint, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
            good = httpx.get(endpoint, headers={"Authorization": f"Bearer {TOKEN}"})
            assert good.status_code == 200
            assert ("mcp_agg_catalog_items", frozenset({("kind", "tools")})) in parse(good.text)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not port_open(ops_port)


async def test_stdio_gateway_serves_metrics_on_its_own_port(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    config.write_text(demo_servers(tmp_path, "units"))
    ops_port = free_port()
    stderr = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config), "--metrics-port", str(ops_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{ops_port}/metrics"
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        wait_until(lambda: port_open(ops_port), 30, "the metrics port")
        early = await scrape(url)  # answers whether or not the backends are up yet
        assert ("mcp_agg_replica_up", frozenset({("server", "units"), ("replica", "units-1")})) in (
            early
        )
        rpc(
            proc.stdin,
            proc.stdout,
            "initialize",
            initialize_params("metrics-test"),
            1,
        )
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        proc.stdin.flush()
        result = rpc(
            proc.stdin, proc.stdout, "tools/call", {"name": "units_add", "arguments": {"a": 1}}, 2
        )
        assert result["isError"] is True  # `b` is missing: the backend's own tool error
        result = rpc(
            proc.stdin,
            proc.stdout,
            "tools/call",
            {"name": "units_add", "arguments": {"a": 1, "b": 2}},
            3,
        )
        assert not result.get("isError")
        after = await scrape(url)
        assert moved(calls(early), calls(after)) == {
            ("units_add", "units", "tool_error"): 1,
            ("units_add", "units", "ok"): 1,
        }
        proc.stdin.close()  # EOF: the client went away, so the gateway and its port stop
        assert proc.wait(timeout=30) == 0
        rest = proc.stdout.read()
        assert all(json.loads(line)["jsonrpc"] == "2.0" for line in rest.splitlines())
        assert not port_open(ops_port)
    finally:
        kill_group(proc)
        stderr.close()
    assert (
        "serving operations endpoints on http://127.0.0.1:" in (tmp_path / "stderr.log").read_text()
    )


def test_non_loopback_metrics_host_needs_auth_or_insecure(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    config.write_text("")
    command = ["serve", "-c", str(config), "--metrics-port", "9", "--metrics-host", "0.0.0.0"]
    refused = subprocess.run(
        [PYTHON, "-m", "mcp_agg", *command],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert refused.returncode == 2
    assert b"refusing to serve --metrics-port on 0.0.0.0" in refused.stderr
    assert refused.stdout == b""
