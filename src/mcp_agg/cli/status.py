"""`mcp-agg status`: each replica's state, here or from a running gateway's admin API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from mcp_agg.cli.logs import setup_logging
from mcp_agg.cli.options import ConfigOption, JsonOption, LogLevelOption, ProfileOption
from mcp_agg.cli.output import fail, print_table
from mcp_agg.security.redact import redact

__all__ = ["status"]

#: Seconds `status --url` waits for a running gateway's answer.
_REMOTE_TIMEOUT = 10.0

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Ask a running gateway (http://HOST:PORT) through its admin API instead "
        "of starting the backends here.",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="MCP_AGG_ADMIN_TOKEN",
        help="The admin token (gateway.admin.token) for --url.",
        show_default=False,
    ),
]

_COLUMNS = [
    "REPLICA",
    "SERVER",
    "TRANSPORT",
    "STATE",
    "BREAKER",
    "HEALTH",
    "TOOLS",
    "CALLS",
    "FAILED",
    "IN-FLIGHT",
    "LATENCY",
    "LAST ERROR",
]


def status(
    config: ConfigOption = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
    token: TokenOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Show each replica: state, breaker, load, last error (of a running gateway with --url;
    else the backends are started once here)."""
    # Imported here, not at the top: `--help` imports every command's module and needs
    # none of this (docs/benchmarks.md, "Startup and import time").
    from mcp_agg.cli.login import sign_in_rows, sign_in_states
    from mcp_agg.cli.runner import load, snapshot_of
    from mcp_agg.observability.status import replica_status

    sign_ins: dict[str, dict[str, Any]] = {}
    if url is not None:
        setup_logging(log_level, "warning")
        rows = _remote_status(url, token)
    else:
        loaded = load(config, profile)
        _, rows = snapshot_of(loaded, log_level, lambda g: [replica_status(u) for u in g.upstreams])
        sign_ins = sign_in_states(loaded)
    if as_json:
        for row in rows if sign_ins else []:  # a server with OAuth: its sign-in's state
            row["sign_in"] = sign_ins.get(row["server"])
        typer.echo(redact(json.dumps(rows, indent=2)))
        return
    print_table(_COLUMNS, [_status_cells(r) for r in rows])
    if sign_ins:
        typer.echo("")
        print_table(["SERVER", "SIGNED IN", "UNTIL", ""], sign_in_rows(sign_ins))


def _status_cells(row: dict[str, Any]) -> list[str]:
    return [
        row["id"],
        row["server"],
        row["transport"],
        row["state"],
        row["breaker"],
        row["health"],
        str(row["tools"]),
        str(row["calls"]),
        str(row["failures"]),
        str(row["in_flight"]),
        f"{row['latency_ms']:.1f}ms" if row["latency_ms"] else "-",
        redact(row["last_error"] or ""),
    ]


def _remote_status(url: str, token: str | None) -> list[dict[str, Any]]:
    """Every replica's state, from a running gateway's `GET /admin/servers`."""
    if token is None:
        raise fail(2, "--url needs the admin token: --token or $MCP_AGG_ADMIN_TOKEN")
    import httpx  # only here: a megabyte of memory that `serve` does not need

    base = url.rstrip("/").removesuffix("/mcp")
    endpoint = f"{base}/admin/servers"
    try:
        response = httpx.get(
            endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=_REMOTE_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise fail(1, f"cannot reach {endpoint}: {exc or type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise fail(1, f"{endpoint} refused the admin token ({response.status_code})")
    if response.status_code == 404:
        raise fail(1, f"no admin API at {endpoint} (is [gateway.admin] configured?)")
    try:
        response.raise_for_status()
        servers = response.json()["servers"]
        return [replica for server in servers for replica in server["replicas"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise fail(1, f"unexpected answer from {endpoint}: {exc}") from None
