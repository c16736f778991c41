"""Tests for mcp_agg.front.server: what building the gateway's server sets up."""

from __future__ import annotations

from pathlib import Path

import fastmcp
import pytest

from mcp_agg.config import load_config
from mcp_agg.core.gateway import Gateway
from mcp_agg.front.server import build_server


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
    path = tmp_path / "servers.toml"
    path.write_text('[[servers]]\nname = "s"\ncommand = "python"\n')
    build_server(Gateway(load_config(path)))
    assert fastmcp.settings.telemetry_mode == expected
