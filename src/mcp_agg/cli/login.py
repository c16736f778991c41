"""`mcp-agg login SERVER` and `mcp-agg logout SERVER`: the user's sign-in to a backend
with `auth = { type = "oauth" }`, kept where the gateway finds it (backend/oauth/)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from mcp_agg.cli.logs import setup_logging
from mcp_agg.cli.options import ConfigOption, LogLevelOption, ProfileOption
from mcp_agg.cli.output import fail
from mcp_agg.errors import GatewayError
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.storage import VaultTokenStorage
    from mcp_agg.config import Config, ReplicaSpec

__all__ = ["login", "logout", "sign_in_rows", "sign_in_states"]

ServerArgument = Annotated[
    str, typer.Argument(help='A [[servers]] name with auth = { type = "oauth" }.')
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the sign-in in the browser.")
]


def login(
    server: ServerArgument,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    timeout: TimeoutOption = 300,
    log_level: LogLevelOption = None,
) -> None:
    """Sign in to a server: print the authorization URL (and open a browser where there is
    one), receive the redirect on a loopback port, and keep the tokens."""
    # Imported here, not at the top: `--help` imports every command's module and needs
    # none of this (docs/benchmarks.md, "Startup and import time").
    from fastmcp import Client

    from mcp_agg.backend.oauth.provider import storage_for
    from mcp_agg.backend.oauth.signin import loopback_sign_in
    from mcp_agg.backend.transports.http import http_transport
    from mcp_agg.cli.runner import load, run

    setup_logging(log_level, "warning")
    spec = _oauth_spec(load(config, profile), server)
    storage = storage_for(spec)

    async def sign_in() -> int:
        port = await _registered_port(storage)
        await storage.forget_tokens()  # a fresh sign-in, even over a working one
        async with loopback_sign_in(port, wait_seconds=timeout) as flow:
            transport = http_transport(spec, sign_in=flow)
            async with Client(transport, name="mcp-agg/login") as client:
                return len(await client.list_tools())

    try:
        count = run(sign_in)
    except (GatewayError, OSError) as exc:
        raise fail(1, f"signing in to {server} failed: {redact(str(exc))}") from None
    except BaseException as exc:
        if isinstance(exc, (typer.Exit, KeyboardInterrupt, SystemExit)):
            raise
        raise fail(1, f"signing in to {server} failed: {redact(_cause(exc))}") from None
    state = run(storage.sign_in)
    until = "" if state.expires_at is None else f" until {_when(state.expires_at)}"
    typer.echo(f"Signed in to {server}{until}; it offers {count} tools.", err=True)


def logout(
    server: ServerArgument,
    config: ConfigOption = None,
    profile: ProfileOption = None,
    log_level: LogLevelOption = None,
) -> None:
    """Forget the tokens (and client registration) kept for a server."""
    from mcp_agg.backend.oauth.provider import storage_for  # not for --help
    from mcp_agg.cli.runner import load, run

    setup_logging(log_level, "warning")
    storage = storage_for(_oauth_spec(load(config, profile), server))
    try:
        run(storage.clear)
    except GatewayError as exc:
        raise fail(1, str(exc)) from None
    typer.echo(f"Signed out of {server}.", err=True)


def sign_in_states(config: Config) -> dict[str, dict[str, Any]]:
    """`status --json`'s `sign_in`, per server with OAuth (backend/oauth/state.py)."""
    from mcp_agg.backend.oauth.state import sign_in_states as oauth_states
    from mcp_agg.cli.runner import run

    return run(lambda: oauth_states(config.replica_specs()))


def sign_in_rows(states: dict[str, dict[str, Any]]) -> list[list[str]]:
    """`status`'s SIGN-IN table, from `sign_in_states`."""
    rows = []
    for name, state in states.items():
        if "error" in state:
            rows.append([name, "unreadable", "-", state["error"]])
        elif not state["signed_in"]:
            rows.append([name, "no", "-", f"run `mcp-agg login {name}`"])
        else:
            at = state["expires_at"]
            until = "-" if at is None else _when(datetime.fromisoformat(at).timestamp())
            rows.append([name, "yes", until, "refreshable" if state["refreshable"] else ""])
    return rows


def _oauth_spec(config: Config, server: str) -> ReplicaSpec:
    """The first replica of `server`, which must sign in with OAuth."""
    for spec in config.replica_specs():
        if spec.group == server:
            if spec.server.auth is None:
                raise fail(2, f'server {server!r} has no auth = {{ type = "oauth" }}')
            return spec
    raise fail(2, f"no enabled server named {server!r} in the config")


async def _registered_port(storage: VaultTokenStorage) -> int | None:
    """The loopback port of the client registered at an earlier sign-in: an authorization
    server may hold a registration to its exact redirect URI. A registration for another
    redirect URI (the gateway's `/oauth/callback`, made by a sign-in from the console) is
    forgotten: the SDK would offer it with the loopback URI, which is refused."""
    client = await storage.get_client_info()
    if client is None:
        return None
    for uri in client.redirect_uris or []:
        parts = urlsplit(str(uri))
        if parts.hostname in ("127.0.0.1", "localhost") and parts.path == "/callback":
            return parts.port
    await storage.forget_client()
    return None


def _cause(exc: BaseException) -> str:
    """The first leaf of an exception group (anyio task groups wrap the SDK's errors)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(at))
