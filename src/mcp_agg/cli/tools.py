"""`mcp-agg tools` and `mcp-agg lock`: the merged catalog, and its tools pinned."""

from __future__ import annotations

import json
from typing import Any

import typer

from mcp_agg.cli.options import ConfigOption, JsonOption, LogLevelOption, ProfileOption
from mcp_agg.cli.output import fail, first_line, print_table
from mcp_agg.errors import ConfigError
from mcp_agg.security.redact import redact

__all__ = ["lock", "tools"]


def tools(
    config: ConfigOption = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
    log_level: LogLevelOption = None,
) -> None:
    """List the merged catalog: exposed name, server, original name, description."""
    # Imported here, not at the top: `--help` imports every command's module and needs
    # none of this (docs/benchmarks.md, "Startup and import time").
    from mcp_agg.cli.runner import snapshot
    from mcp_agg.observability.status import tool_rows

    gateway, rows = snapshot(config, profile, log_level, lambda g: tool_rows(g.catalog, g.pinner))
    if as_json:
        typer.echo(redact(json.dumps(rows, indent=2)))
    else:
        _print_tools(rows)
    down = [u for u in gateway.upstreams if not u.stats.connects]
    for upstream in down:
        typer.echo(
            redact(f"mcp-agg: {upstream.id} unavailable: {upstream.stats.last_error}"), err=True
        )
    if down and len(down) == len(gateway.upstreams):
        raise typer.Exit(1)


def _print_tools(rows: list[dict[str, Any]]) -> None:
    pinning = any(r["pin"] is not None for r in rows)  # a PIN column while pinning is on
    print_table(
        ["TOOL", "SERVER", "ORIGINAL", *(["PIN"] if pinning else []), "DESCRIPTION"],
        [
            [
                r["name"],
                r["server"],
                r["original_name"] or "-",
                *([_pin_mark(r)] if pinning else []),
                redact(first_line(r["description"])),
            ]
            for r in rows
        ],
    )


def _pin_mark(row: dict[str, Any]) -> str:
    """`ok`, `new`, `changed:description,schema`; `!` when withheld (pin = "enforce");
    `-` for a tool that is not pinned (the gateway's own)."""
    if row["pin"] is None:
        return "-"
    mark = str(row["pin"])
    if row["pin_changes"]:
        mark += ":" + ",".join(row["pin_changes"])
    return mark + ("!" if row["withheld"] else "")


def lock(
    config: ConfigOption = None, profile: ProfileOption = None, log_level: LogLevelOption = None
) -> None:
    """Pin every tool as it is now: write the lock file ([gateway] lock_file)."""
    from mcp_agg.cli.runner import load, snapshot_of  # not for --help
    from mcp_agg.security.pinning import lock_catalog, read_lock, write_lock

    loaded = load(config, profile)
    path = loaded.base_dir / loaded.gateway.lock_file
    try:
        previous = read_lock(path)
    except ConfigError:
        previous = None  # a broken lock is replaced whole
    # Pinning off: every tool as the backends offer it now, and no old lock to apply.
    unpinned = loaded.model_copy(
        update={"gateway": loaded.gateway.model_copy(update={"pin": "off"})}
    )
    gateway, _ = snapshot_of(unpinned, log_level, lambda g: None)
    down = sorted(
        name
        for name, group in gateway.groups.items()
        if not any(u.stats.connects for u in group.replicas)
    )
    if down and len(down) == len(gateway.groups):
        raise fail(1, "no backend reachable: lock file not written")
    pinned = lock_catalog(gateway.catalog, {}, previous, keep=down)
    try:
        write_lock(path, pinned)
    except OSError as exc:
        raise fail(1, f"cannot write {path}: {exc.strerror or exc}") from None
    kept = [name for name, entry in pinned.tools.items() if entry.server in down]
    for server in down:
        typer.echo(
            f"mcp-agg: {server} unavailable: its entries in the previous lock are kept", err=True
        )
    typer.echo(
        f"{path}: {len(pinned.tools)} tools pinned" + (f" ({len(kept)} kept)" if kept else "")
    )
