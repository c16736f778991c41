"""The `mcp-agg` command line: serve, tools, lock, status, call, check, import.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. Everything but a
command's own output goes to stderr; in `serve --transport stdio`, stdout is the protocol.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import mcp_types
import typer
from fastmcp import Client
from mcp.shared.exceptions import MCPError

from mcp_agg.components.forwarding import ForwardingTool
from mcp_agg.components.local import LocalTool
from mcp_agg.config import Config, find_config, load_config, mcp_servers_to_toml
from mcp_agg.console import startup
from mcp_agg.core.gateway import Gateway
from mcp_agg.core.reload import reload_from_file, watch_config
from mcp_agg.errors import CatalogError, ConfigError
from mcp_agg.front.ops import ops_routes
from mcp_agg.front.server import build_server
from mcp_agg.front.serving import OpsListener, ops_listener, serve_http, serve_stdio
from mcp_agg.observability import tracing
from mcp_agg.observability.status import replica_status
from mcp_agg.security.origin import is_loopback
from mcp_agg.security.pinning import lock_catalog, read_lock, write_lock
from mcp_agg.security.redact import RedactingFilter, redact

__all__ = ["app", "main", "replica_status"]

logger = logging.getLogger("mcp_agg")

app = typer.Typer(
    name="mcp-agg",
    help="An aggregating MCP gateway: one MCP server in front of all of yours.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="servers.toml or mcpServers JSON [default: $MCP_AGG_CONFIG, then ./servers.toml]",
        show_default=False,
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="Apply the config's [profiles.NAME] table [default: $MCP_AGG_PROFILE]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
LogLevelOption = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        help="debug, info, warning or error [default: info for serve, warning otherwise; "
        "$MCP_AGG_LOG_LEVEL]",
        show_default=False,
    ),
]

_T = TypeVar("_T")
#: Seconds `status --url` waits for a running gateway's answer.
_REMOTE_TIMEOUT = 10.0


def _setup_logging(level: str | None, default: str) -> None:
    chosen = (level or os.environ.get("MCP_AGG_LOG_LEVEL") or default).upper()
    if chosen not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        _fail(2, f"--log-level: unknown level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())  # configured secrets never reach the logs
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(chosen)
    # FastMCP logs through its own (rich) handler and not to the root: one format for all.
    fastmcp_logger = logging.getLogger("fastmcp")
    fastmcp_logger.handlers.clear()
    fastmcp_logger.propagate = True
    server_logger = logging.getLogger("fastmcp.server.server")
    if not any(isinstance(f, _BackendErrorFilter) for f in server_logger.filters):
        server_logger.addFilter(_BackendErrorFilter())
    # The SDK and FastMCP are chatty at INFO about every request.
    for name in ("mcp", "fastmcp", "httpx", "httpx2", "httpcore2", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


class _BackendErrorFilter(logging.Filter):
    """A backend's JSON-RPC error is relayed to the client as it is: not a gateway fault.

    FastMCP logs such an error with a traceback at ERROR; here it becomes one INFO line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, MCPError):
            record.msg = f"{record.getMessage()}: backend answered: {error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _fail(code: int, message: str) -> typer.Exit:
    typer.echo(f"mcp-agg: {message}", err=True)
    raise typer.Exit(code)


def _load(config_path: Path | None, profile: str | None = None) -> Config:
    try:
        return load_config(find_config(config_path), profile=profile)
    except ConfigError as exc:
        raise _fail(2, f"config error: {exc}") from None


def _run(fn: Callable[[], Awaitable[_T]]) -> _T:
    try:
        return anyio.run(fn)
    except CatalogError as exc:
        raise _fail(2, str(exc)) from None
    except ConfigError as exc:  # the lock file, read at startup
        raise _fail(2, f"config error: {exc}") from None
    except BaseExceptionGroup as group:
        for leaf in _leaves(group):
            if isinstance(leaf, CatalogError):
                raise _fail(2, str(leaf)) from None
            if isinstance(leaf, ConfigError):
                raise _fail(2, f"config error: {leaf}") from None
        raise


def _snapshot(
    config: Path | None, profile: str | None, log_level: str | None, read: Callable[[Gateway], _T]
) -> tuple[Gateway, _T]:
    """Start the gateway once, read something off it, and stop it."""
    return _snapshot_of(_load(config, profile), log_level, read)


def _snapshot_of(
    loaded: Config, log_level: str | None, read: Callable[[Gateway], _T]
) -> tuple[Gateway, _T]:
    _setup_logging(log_level, "warning")
    gateway = Gateway(loaded)

    async def run() -> _T:
        async with gateway.running():
            return read(gateway)

    return gateway, _run(run)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


# ---------------------------------------------------------------------------- serve


@app.command()
def serve(
    config: ConfigOption = None,
    profile: ProfileOption = None,
    transport: Annotated[
        Literal["stdio", "http"], typer.Option("--transport", "-t", help="stdio or http")
    ] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port; the endpoint is /mcp.")] = 8000,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve HTTP (or --metrics-port) on a non-loopback address without "
            "[gateway.auth] (anyone who can reach the port may use every backend).",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="Also serve /metrics (and the other operations endpoints) on this port: "
            "with stdio, the only way to have them.",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Bind address of --metrics-port.")
    ] = "127.0.0.1",
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Reload the config when its file changes (as SIGHUP does): servers are "
            "added, removed and reconfigured without dropping client sessions.",
        ),
    ] = False,
    log_level: LogLevelOption = None,
) -> None:
    """Run the gateway: stdio (for Claude Desktop and IDEs) or streamable HTTP at /mcp.

    SIGHUP reloads the config file (as --watch does on every change).
    """
    _setup_logging(log_level, "info")
    loaded = _load(config, profile)
    if transport == "http":
        _check_exposure(loaded, host, "HTTP", "use every backend", insecure)
    if metrics_port is not None:
        _check_exposure(
            loaded, metrics_host, "--metrics-port", "use its operations endpoints", insecure
        )
    gateway = Gateway(loaded)
    server = build_server(gateway, http=transport == "http")
    ops: OpsListener | None = None
    if metrics_port is not None:
        routes = ops_routes(gateway)
        if not routes:
            logger.warning("--metrics-port: no operations endpoint is on ([gateway] metrics)")
        try:
            ops = ops_listener(
                routes, host=metrics_host, port=metrics_port, settings=gateway.config.gateway
            )
        except OSError as exc:
            raise _fail(
                1, f"--metrics-port: cannot listen on {metrics_host}:{metrics_port}: {exc}"
            ) from None

    async def reload() -> None:
        await reload_from_file(gateway.reconfigurer)

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            if watch and loaded.source is not None:
                tg.start_soon(watch_config, loaded.source, reload)
            if transport == "http":
                level = logging.getLevelName(logging.getLogger().level).lower()
                await serve_http(
                    server,
                    host=host,
                    port=port,
                    log_level=level,
                    settings=loaded.gateway,
                    ops=ops,
                    on_reload=reload,
                    hurry=gateway.hurry,
                )
            else:
                await serve_stdio(server, ops=ops, on_reload=reload, hurry=gateway.hurry)
            tg.cancel_scope.cancel()

    # Each backend's first connection and a summary: live on a terminal (HTTP front
    # only), else log lines. Never on stdout: in stdio mode that is the protocol.
    with startup.feedback(transport, sys.stderr) as observer:
        gateway.startup = observer
        _run(run)


def _check_exposure(loaded: Config, host: str, what: str, risk: str, insecure: bool) -> None:
    """Refuse to listen on a non-loopback address without [gateway.auth], unless
    --insecure."""
    if loaded.gateway.auth is not None or is_loopback(host):
        return
    if not insecure:
        raise _fail(
            2,
            f"refusing to serve {what} on {host} without authentication: anyone who can "
            f"reach it could {risk}. Configure [gateway.auth] in the config "
            "(see README, 'Running it for a team'), bind to 127.0.0.1, or pass --insecure.",
        )
    logger.warning("serving %s on %s WITHOUT authentication (--insecure)", what, host)


# ---------------------------------------------------------------------------- tools


@app.command()
def tools(
    config: ConfigOption = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
    log_level: LogLevelOption = None,
) -> None:
    """List the merged catalog: exposed name, server, original name, description."""

    def collect(gateway: Gateway) -> list[dict[str, Any]]:
        pinner = gateway.pinner
        pinning = pinner.mode != "off" and pinner.lock is not None
        catalog = gateway.catalog
        listed: dict[str, ForwardingTool | LocalTool] = {
            **catalog.tools,
            **pinner.withheld,
            **catalog.local,
        }
        rows = []
        for name, tool in listed.items():
            # The gateway's own tools (fan-outs...) have no backend original and no pin.
            original = tool.original if isinstance(tool, ForwardingTool) else None
            definition = tool.to_mcp_tool()
            rows.append(
                {
                    "name": name,
                    "server": tool.server,
                    "original_name": original,
                    "description": tool.description or "",
                    "annotations": definition.annotations.model_dump(
                        by_alias=True, exclude_none=True
                    )
                    if definition.annotations
                    else None,
                    "input_schema": definition.input_schema,
                    # Against the lock file: ok, changed or new (None: no lock, pin = "off").
                    "pin": pinner.report.status(name) if pinning and original else None,
                    "pin_changes": list(pinner.report.changed.get(name, ())),
                    "withheld": name in pinner.withheld,
                }
            )
        return sorted(rows, key=lambda row: str(row["name"]))

    gateway, rows = _snapshot(config, profile, log_level, collect)
    if as_json:
        typer.echo(redact(json.dumps(rows, indent=2)))
    elif any(r["pin"] is not None for r in rows):  # a PIN column while pinning is on
        _print_table(
            ["TOOL", "SERVER", "ORIGINAL", "PIN", "DESCRIPTION"],
            [
                [
                    r["name"],
                    r["server"],
                    r["original_name"] or "-",
                    _pin_mark(r),
                    redact(_first_line(r["description"])),
                ]
                for r in rows
            ],
        )
    else:
        _print_table(
            ["TOOL", "SERVER", "ORIGINAL", "DESCRIPTION"],
            [
                [
                    r["name"],
                    r["server"],
                    r["original_name"] or "-",
                    redact(_first_line(r["description"])),
                ]
                for r in rows
            ],
        )
    down = [u for u in gateway.upstreams if not u.stats.connects]
    for upstream in down:
        typer.echo(
            redact(f"mcp-agg: {upstream.id} unavailable: {upstream.stats.last_error}"), err=True
        )
    if down and len(down) == len(gateway.upstreams):
        raise typer.Exit(1)


def _pin_mark(row: dict[str, Any]) -> str:
    """`ok`, `new`, `changed:description,schema`; `!` when withheld (pin = "enforce");
    `-` for a tool that is not pinned (the gateway's own)."""
    if row["pin"] is None:
        return "-"
    mark = str(row["pin"])
    if row["pin_changes"]:
        mark += ":" + ",".join(row["pin_changes"])
    return mark + ("!" if row["withheld"] else "")


# ---------------------------------------------------------------------------- lock


@app.command()
def lock(
    config: ConfigOption = None, profile: ProfileOption = None, log_level: LogLevelOption = None
) -> None:
    """Pin every tool as it is now: write the lock file ([gateway] lock_file)."""
    loaded = _load(config, profile)
    path = loaded.base_dir / loaded.gateway.lock_file
    try:
        previous = read_lock(path)
    except ConfigError:
        previous = None  # a broken lock is replaced whole
    # Pinning off: every tool as the backends offer it now, and no old lock to apply.
    unpinned = loaded.model_copy(
        update={"gateway": loaded.gateway.model_copy(update={"pin": "off"})}
    )
    gateway, _ = _snapshot_of(unpinned, log_level, lambda g: None)
    down = sorted(
        name
        for name, group in gateway.groups.items()
        if not any(u.stats.connects for u in group.replicas)
    )
    if down and len(down) == len(gateway.groups):
        raise _fail(1, "no backend reachable: lock file not written")
    pinned = lock_catalog(gateway.catalog, {}, previous, keep=down)
    try:
        write_lock(path, pinned)
    except OSError as exc:
        raise _fail(1, f"cannot write {path}: {exc.strerror or exc}") from None
    kept = [name for name, entry in pinned.tools.items() if entry.server in down]
    for server in down:
        typer.echo(
            f"mcp-agg: {server} unavailable: its entries in the previous lock are kept", err=True
        )
    typer.echo(
        f"{path}: {len(pinned.tools)} tools pinned" + (f" ({len(kept)} kept)" if kept else "")
    )


# ---------------------------------------------------------------------------- status


@app.command()
def status(
    config: ConfigOption = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Ask a running gateway (http://HOST:PORT) through its admin API instead "
            "of starting the backends here.",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="MCP_AGG_ADMIN_TOKEN",
            help="The admin token (gateway.admin.token) for --url.",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevelOption = None,
) -> None:
    """Show each replica: state, breaker, load, last error (of a running gateway with --url;
    else the backends are started once here)."""
    if url is not None:
        _setup_logging(log_level, "warning")
        rows = _remote_status(url, token)
    else:
        _, rows = _snapshot(
            config, profile, log_level, lambda g: [replica_status(u) for u in g.upstreams]
        )
    if as_json:
        typer.echo(redact(json.dumps(rows, indent=2)))
        return
    _print_table(
        [
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
        ],
        [
            [
                r["id"],
                r["server"],
                r["transport"],
                r["state"],
                r["breaker"],
                "ok" if r["healthy"] else "ejected",
                str(r["tools"]),
                str(r["calls"]),
                str(r["failures"]),
                str(r["in_flight"]),
                f"{r['latency_ms']:.1f}ms" if r["latency_ms"] else "-",
                redact(r["last_error"] or ""),
            ]
            for r in rows
        ],
    )


def _remote_status(url: str, token: str | None) -> list[dict[str, Any]]:
    """Every replica's state, from a running gateway's `GET /admin/servers`."""
    if token is None:
        raise _fail(2, "--url needs the admin token: --token or $MCP_AGG_ADMIN_TOKEN")
    import httpx  # only here: a megabyte of memory that `serve` does not need

    base = url.rstrip("/").removesuffix("/mcp")
    endpoint = f"{base}/admin/servers"
    try:
        response = httpx.get(
            endpoint, headers={"Authorization": f"Bearer {token}"}, timeout=_REMOTE_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise _fail(1, f"cannot reach {endpoint}: {exc or type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise _fail(1, f"{endpoint} refused the admin token ({response.status_code})")
    if response.status_code == 404:
        raise _fail(1, f"no admin API at {endpoint} (is [gateway.admin] configured?)")
    try:
        response.raise_for_status()
        servers = response.json()["servers"]
        return [replica for server in servers for replica in server["replicas"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise _fail(1, f"unexpected answer from {endpoint}: {exc}") from None


# ---------------------------------------------------------------------------- call


@app.command()
def call(
    tool: Annotated[str, typer.Argument(help="Exposed tool name, as `mcp-agg tools` lists it.")],
    args: Annotated[str, typer.Option("--args", "-a", help="Arguments as a JSON object.")] = "{}",
    config: ConfigOption = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
    log_level: LogLevelOption = None,
) -> None:
    """Call one tool through the whole gateway and print its result."""
    _setup_logging(log_level, "warning")
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        raise _fail(2, f"--args is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise _fail(2, "--args must be a JSON object")
    server = build_server(Gateway(_load(config, profile)))

    async def invoke() -> mcp_types.CallToolResult:
        # An in-memory MCP client: the call takes the same path as a client's over stdio.
        async with Client(server) as client:
            result: mcp_types.CallToolResult = await client.call_tool_mcp(tool, arguments)
            return result

    result = _run(invoke)
    if as_json:
        typer.echo(result.model_dump_json(by_alias=True, exclude_none=True, indent=2))
    else:
        for block in result.content:
            if isinstance(block, mcp_types.TextContent):
                typer.echo(block.text)
            else:
                typer.echo(block.model_dump_json(by_alias=True, exclude_none=True))
        if result.structured_content is not None and not result.content:
            typer.echo(json.dumps(result.structured_content, indent=2))
    if result.is_error:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- check, import


@app.command()
def check(config: ConfigOption = None, profile: ProfileOption = None) -> None:
    """Validate the config without starting anything (every profile is checked)."""
    path = None
    try:
        path = find_config(config)
        loaded = load_config(path, profile=profile)
        if loaded.gateway.tracing is not None:
            tracing.require_extra(loaded.gateway.tracing, source=path)
    except ConfigError as exc:
        raise _fail(2, f"config error: {exc}") from None
    specs = loaded.replica_specs()
    groups = {s.group for s in specs}
    typer.echo(f"{path}: ok ({len(groups)} servers, {len(specs)} replicas)")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A Claude Desktop style mcpServers JSON file.")],
) -> None:
    """Print the servers.toml equivalent of an mcpServers JSON file."""
    try:
        typer.echo(mcp_servers_to_toml(file), nl=False)
    except ConfigError as exc:
        raise _fail(2, f"config error: {exc}") from None


# ---------------------------------------------------------------------------- output


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 70 else line[:67] + "..."


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    app()
