"""The admin HTTP API: every server's state, and servers registered at runtime.

Off unless `[gateway.admin]` is configured. Every request needs `Authorization: Bearer
<admin token>`; without it, or with another token, the answer is 401 (the token is
compared in constant time). Bodies and answers are JSON; errors are `{"error": "..."}`.

    GET    /admin/servers          every server: where it comes from, its exposed tools,
                                   its replicas' state (as `mcp-agg status --json`)
    POST   /admin/servers          register a server: the body is one `[[servers]]`
                                   entry; 201 once it connected or failed to (say which)
    DELETE /admin/servers/{name}   unregister one; answers once its calls have drained
    POST   /admin/replicas/{id}/drain  take a replica out of balancing: no new call goes
                                   to it, calls in flight finish (this gateway only)
    POST   /admin/replicas/{id}/admit  put a drained replica back

A registered server is never written to the config file: it is kept across reloads
of the file (unless the file then defines its name), and in the gateway's store, so
every replica of a fleet runs it and a restarted one runs it again (core/registry.py).
The replica that gets the request runs the server before it answers; the others follow.
While the store is unreachable, registering and unregistering answer 503.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mcp_agg.config import ServerConfig, describe_errors
from mcp_agg.core.registry import entry_json
from mcp_agg.errors import ConfigError, ReloadError, StoreUnavailable
from mcp_agg.observability.status import replica_status
from mcp_agg.security.auth import bearer_token
from mcp_agg.security.redact import Redactor, redact, secrets_of

if TYPE_CHECKING:
    from mcp_agg.core.views import AdminHost

__all__ = ["admin_routes", "drain", "register", "servers_state", "unregister"]

Endpoint = Callable[[Request], Awaitable[Response]]

logger = logging.getLogger(__name__)


def admin_routes(gateway: AdminHost) -> list[BaseRoute]:
    """The admin API's routes, or none without `[gateway.admin]`.

    The token is read once: `[gateway.admin]` is among the settings a reload does not
    change while the gateway runs.
    """
    settings = gateway.config.gateway.admin
    if settings is None:
        return []
    token = settings.token.encode()

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def check(request: Request) -> Response:
            given = bearer_token(request.headers.get("authorization"))
            if given is None:
                return _refused("this endpoint needs Authorization: Bearer <admin token>")
            if not hmac.compare_digest(given.encode(), token):
                return _refused("the admin token is not valid", error="invalid_token")
            return await endpoint(request)

        return check

    async def servers(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "the body is not JSON")
            return await register(gateway, body)
        return _json({"servers": servers_state(gateway)})

    async def server(request: Request) -> Response:
        return await unregister(gateway, request.path_params["name"])

    async def drain_replica(request: Request) -> Response:
        return drain(gateway, request.path_params["replica"], drained=True)

    async def admit_replica(request: Request) -> Response:
        return drain(gateway, request.path_params["replica"], drained=False)

    return [
        Route("/admin/servers", guarded(servers), methods=["GET", "POST"]),
        Route("/admin/servers/{name}", guarded(server), methods=["DELETE"]),
        Route("/admin/replicas/{replica}/drain", guarded(drain_replica), methods=["POST"]),
        Route("/admin/replicas/{replica}/admit", guarded(admit_replica), methods=["POST"]),
    ]


def servers_state(gateway: AdminHost) -> list[dict[str, Any]]:
    """Every server of the running config, in config order, with its replicas' state."""
    exposed = Counter(tool.group.name for tool in gateway.catalog.tools.values())
    registered = gateway.reconfigurer.registered
    return [
        {
            "name": name,
            "source": "admin" if name in registered else "config",
            "failover_for": group.server.failover_for,
            "tools": exposed[name],
            "replicas": [replica_status(upstream) for upstream in group.replicas],
        }
        for name, group in gateway.groups.items()
    ]


async def register(gateway: AdminHost, body: object) -> Response:
    """Register the server `body` describes (one `[[servers]]` entry, decoded JSON);
    the admin API's answer (the web console shows it too)."""
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object: the fields of a [[servers]] entry")
    try:
        server = ServerConfig.model_validate(body)
    except ValidationError as exc:
        # As config errors do: each problem names its field, and no secret is echoed.
        hide = Redactor(secrets_of({"servers": [body]}))
        return _error(400, hide(f"invalid server: {describe_errors(exc, body)}"))
    servers = gateway.reconfigurer
    if server.name in servers.config_names():
        return _error(409, f"a server named {server.name!r} is already configured")
    try:
        report = await servers.register(server)
    except ConfigError as exc:
        return _error(400, f"invalid config with this server: {exc.problem}")
    except ReloadError as exc:
        return _error(409, str(exc))
    try:
        await gateway.store.put_registration(server.name, entry_json(body))
    except StoreUnavailable as exc:  # not shared: not registered at all
        await servers.unregister(server.name)
        return _error(503, f"server {server.name!r} not registered: {exc}")
    group = gateway.groups.get(server.name)
    replicas = group.replicas if group is not None else []
    tools = sum(1 for tool in gateway.catalog.tools.values() if tool.group is group)
    return _json(
        {
            "name": server.name,
            "connected": any(r.available for r in replicas),
            "tools": tools,
            "replicas": [replica_status(r) for r in replicas],
            "restart_needed": list(report.restart_needed),
        },
        status=201,
    )


async def unregister(gateway: AdminHost, name: str) -> Response:
    """Unregister a server registered at runtime; the admin API's answer."""
    servers = gateway.reconfigurer
    try:
        if name not in servers.registered:
            if name in servers.config_names():
                return _error(
                    409, f"{name!r} is defined in the config file: remove it there and reload"
                )
            if name not in await gateway.store.registrations():
                return _error(404, f"no server named {name!r} was registered at runtime")
        else:
            await servers.unregister(name)
        await gateway.store.put_registration(name, None)
    except ReloadError as exc:
        return _error(409, str(exc))
    except StoreUnavailable as exc:
        return _error(503, f"server {name!r} not unregistered on every replica: {exc}")
    return _json({"name": name, "removed": True})


def drain(gateway: AdminHost, replica: str, *, drained: bool) -> Response:
    """Drain a replica (`drained`) or re-admit it; the admin API's answer (the web
    console shows it too). Only this gateway's balancing changes: a replica of a fleet
    is drained on each gateway that should stop using it."""
    found = next((u for u in gateway.upstreams if u.id == replica), None)
    if found is None:
        return _error(404, f"no replica named {replica!r}")
    found.drained = drained
    logger.info("replica %s %s by the admin", replica, "drained" if drained else "re-admitted")
    return _json({"id": replica, "drained": drained, "in_flight": found.stats.in_flight})


def _json(payload: object, status: int = 200) -> Response:
    # Replica errors may quote a backend's output: configured secrets never leave.
    return Response(redact(json.dumps(payload)), status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _refused(message: str, *, error: str | None = None) -> Response:
    challenge = 'Bearer realm="mcp-agg admin"' + (f', error="{error}"' if error else "")
    response = _error(401, message)
    response.headers["WWW-Authenticate"] = challenge
    return response
