"""The FastMCP server over a gateway: what building it sets up, and what it gives the MCP
SDK besides its handlers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import fastmcp
import pytest

from mcp_agg.config import RoleConfig
from mcp_agg.front.server import build_server
from mcp_agg.security.access import AccessPolicy
from tests.fakes import make_gateway


@pytest.mark.parametrize(
    ("roles", "visible"),
    [
        (None, {"gateway_health", "gateway_metrics"}),  # no [gateway.auth]: everything
        ({"health": RoleConfig(allow=["gateway_health"])}, {"gateway_health"}),
    ],
)
def test_the_sdk_gets_a_called_tools_schema_from_the_catalog(
    tmp_path: Path, roles: dict[str, RoleConfig] | None, visible: set[str]
) -> None:
    """The schema of a tool the caller may call (the SDK's modern-era HTTP entry checks
    `Mcp-Param-*` headers against it), without a tools/list; None for any other name."""
    gateway = make_gateway(tmp_path, [])
    lookup = build_server(gateway)._mcp_server.get_tool_input_schema
    if roles is not None:  # the caller's grant, as an authenticated HTTP front has it
        current = AccessPolicy(roles).grant(frozenset(roles))
        gateway.visibility.access = SimpleNamespace(grant=lambda: current)  # type: ignore[assignment]
    assert lookup is not None
    tools = gateway.catalog.local
    for name in ("gateway_health", "gateway_metrics", "no_such_tool"):
        expected = tools[name].parameters if name in visible else None
        assert lookup(name) == expected
    assert lookup("gateway_health") is not None


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("native", "propagation_only"),  # FastMCP's default: its spans off, propagation kept
        ("propagation_only", "propagation_only"),
        ("off", "off"),  # an operator's choice stands
    ],
)
def test_fastmcps_own_spans_are_off_and_its_trace_propagation_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, expected: str
) -> None:
    monkeypatch.setattr(fastmcp.settings, "telemetry_mode", mode)
    build_server(make_gateway(tmp_path, [{"name": "s", "command": "python"}]))
    assert fastmcp.settings.telemetry_mode == expected
