"""The web console's routes under `/ui`: pages, the fragments they poll, and actions.

Off unless `[gateway.admin]` is configured: the console is as powerful as the admin
API, so it opens with the same token (`session.py` says how). A page asked for without
it redirects to the login form; a fragment or an action gets 401 (htmx is told to go
to the login form). Every POST but the login needs the session's CSRF token.

Pages are rendered on the server; htmx (vendored in `static/`) swaps the fragments a
page polls (servers every second, traffic every two) and posts the actions, each after
a confirmation. Static files are public: they hold no state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from mcp_agg.backend.oauth.links import SignInError
from mcp_agg.core.reload import reload_from_file
from mcp_agg.errors import ConfigError, GatewayError
from mcp_agg.front.admin import drain, register, unregister
from mcp_agg.front.ui.pages import catalog_page, servers_page, traffic_page
from mcp_agg.front.ui.runner import arguments_of, fields_of
from mcp_agg.front.ui.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_TTL,
    ConsoleKeys,
    Visitor,
)
from mcp_agg.front.ui.signins import SignInCache
from mcp_agg.security.auth import console_call
from mcp_agg.security.pinning import lock_catalog, read_lock, write_lock
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.webflow import WebSignIn
    from mcp_agg.core.views import ConsoleHost

__all__ = ["ui_routes"]

logger = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_TEMPLATES = Jinja2Templates(directory=_HERE / "templates")
#: Only our own files run or style a page; nothing may frame it (clickjacking).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": Chromium then sends `Origin: null` on the page's own form posts,
    # which the Host/Origin guard refuses.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Page = Callable[[Request, Visitor], Awaitable[Response]]


def ui_routes(
    gateway: ConsoleHost, signin: WebSignIn | None = None, sign_ins: SignInCache | None = None
) -> list[BaseRoute]:
    """The console's routes, or none without `[gateway.admin]` (the token is read once,
    as the admin API reads it). `signin`: the HTTP front's browser sign-in, which starts
    a backend sign-in; None (no `token_key` or public URL, or not the HTTP front): the
    console says to run `mcp-agg login` instead. `sign_ins`: where the servers' sign-in
    states are kept between polls (a new one by default; tests give one a fake clock)."""
    settings = gateway.config.gateway.admin
    if settings is None:
        return []
    keys = ConsoleKeys(settings.token)
    if sign_ins is None:
        sign_ins = SignInCache()
    if signin is not None:
        signin.completed.append(sign_ins.forget)

    def render(
        request: Request, visitor: Visitor, template: str, status: int = 200, **context: Any
    ) -> Response:
        csrf = keys.csrf_for(visitor.session) if visitor.session is not None else ""
        response = _TEMPLATES.TemplateResponse(
            request, template, {"csrf": csrf, "path": request.url.path, **context}, status
        )
        response.headers.update(_HEADERS)
        return response

    def guarded(page: Page, *, fragment: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def check(request: Request) -> Response:
            visitor = keys.visitor(request)
            if visitor is None:
                if fragment or request.method != "GET":
                    response = Response("the console needs the admin token: log in", 401)
                    response.headers["HX-Redirect"] = "/ui/login"
                    return response
                return RedirectResponse("/ui/login", 303)
            if request.method == "POST" and visitor.by_cookie:
                assert visitor.session is not None
                given = request.headers.get(CSRF_HEADER)
                if given is None:
                    field = (await request.form()).get(CSRF_FIELD)
                    given = field if isinstance(field, str) else None
                if not keys.csrf_valid(visitor.session, given):
                    return Response("refused: missing or invalid CSRF token", 403)
            return await page(request, visitor)

        return check

    async def home(request: Request) -> Response:
        return RedirectResponse("/ui/servers", 303)

    async def login(request: Request) -> Response:
        anonymous = Visitor(None)
        if request.method == "GET":
            return render(request, anonymous, "login.html")
        given = (await request.form()).get("token")
        if not isinstance(given, str) or not keys.token_matches(given):
            return render(
                request, anonymous, "login.html", 401, error="the admin token is not valid"
            )
        response = RedirectResponse("/ui/servers", 303)
        response.set_cookie(
            COOKIE,
            keys.new_session(),
            max_age=SESSION_TTL,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(request: Request, visitor: Visitor) -> Response:
        response = RedirectResponse("/ui/login", 303)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    async def servers(request: Request, visitor: Visitor) -> Response:
        return render(
            request, visitor, "servers.html", servers=await servers_page(gateway, sign_ins)
        )

    async def server_rows(request: Request, visitor: Visitor) -> Response:
        return render(
            request, visitor, "server_rows.html", servers=await servers_page(gateway, sign_ins)
        )

    async def catalog(request: Request, visitor: Visitor) -> Response:
        query = request.query_params.get("q", "")
        page = catalog_page(gateway, query)
        return render(request, visitor, "catalog.html", query=query, **page)

    async def catalog_rows(request: Request, visitor: Visitor) -> Response:
        query = request.query_params.get("q", "")
        page = catalog_page(gateway, query)
        return render(request, visitor, "catalog_rows.html", query=query, **page)

    async def traffic(request: Request, visitor: Visitor) -> Response:
        return render(request, visitor, "traffic.html", **await traffic_page(gateway))

    async def traffic_panel(request: Request, visitor: Visitor) -> Response:
        return render(request, visitor, "traffic_panel.html", **await traffic_page(gateway))

    async def tool(request: Request, visitor: Visitor) -> Response:
        name = request.path_params["name"]
        # The call path's own lookup: a tool the access rules hide is unknown here too.
        target = gateway.calls.lookup(name)
        listed = gateway.catalog.tool(name)
        if target is None or listed is None:
            return render(request, visitor, "error.html", 404, message=f"unknown tool {name!r}")
        definition = listed.to_mcp_tool()
        fields = fields_of(definition.input_schema)
        if request.method == "GET":
            return render(
                request,
                visitor,
                "tool.html",
                name=name,
                description=redact(definition.description or ""),
                fields=fields,
            )
        form = await request.form()
        values = {key: value for key, value in form.items() if isinstance(value, str)}
        try:
            arguments = arguments_of(fields, values)
        except ValueError as exc:
            return render(request, visitor, "result.html", 400, error=str(exc))
        token = console_call.set(True)
        try:
            wire = await gateway.calls.call(target, arguments)
        finally:
            console_call.reset(token)
        return render(
            request,
            visitor,
            "result.html",
            failed=bool(wire.get("isError")),
            result=redact(json.dumps(wire, indent=2, ensure_ascii=False)),
        )

    async def actions(request: Request, visitor: Visitor) -> Response:
        return render(
            request,
            visitor,
            "actions.html",
            servers=await servers_page(gateway, sign_ins),
            can_sign_in=signin is not None,
            registered=sorted(gateway.reconfigurer.registered),
            pins=catalog_page(gateway)["tools"],
        )

    async def approve(request: Request, visitor: Visitor) -> Response:
        return render(request, visitor, "done.html", **await _approve_pins(gateway))

    async def reload(request: Request, visitor: Visitor) -> Response:
        problem = await reload_from_file(gateway.reconfigurer)
        if problem is not None:
            return render(request, visitor, "done.html", 400, ok=False, message=redact(problem))
        return render(request, visitor, "done.html", ok=True, message="config reloaded")

    async def add_server(request: Request, visitor: Visitor) -> Response:
        entry = (await request.form()).get("entry")
        try:
            body = json.loads(entry) if isinstance(entry, str) else None
        except ValueError:
            return render(request, visitor, "done.html", 400, ok=False, message="not JSON")
        return _answer(request, visitor, await register(gateway, body))

    async def remove_server(request: Request, visitor: Visitor) -> Response:
        return _answer(request, visitor, await unregister(gateway, request.path_params["name"]))

    async def sign_in(request: Request, visitor: Visitor) -> Response:
        """Start the gateway's own sign-in to a server: the browser is sent to its
        authorization server (htmx follows `HX-Redirect`), whose redirect lands on the
        gateway's `/oauth/callback`, which keeps the tokens as `mcp-agg login` does."""
        name = request.path_params["name"]
        if signin is None:
            message = f"the console cannot sign in here: run `mcp-agg login {name}` on the host"
            return render(request, visitor, "done.html", 409, ok=False, message=message)
        try:
            location = await signin.authorize_gateway(name)
        except SignInError as exc:
            return render(request, visitor, "done.html", 400, ok=False, message=str(exc))
        except GatewayError as exc:  # the store or the vault: the operator's to fix
            return render(request, visitor, "done.html", 503, ok=False, message=exc.logged)
        except Exception as exc:  # the backend's authorization server, or reaching it
            logger.warning("console sign-in to %s failed: %s", name, type(exc).__name__)
            message = f"the backend's authorization server failed ({type(exc).__name__})"
            return render(request, visitor, "done.html", 502, ok=False, message=message)
        logger.info("console: the gateway's sign-in to %s started", name)
        message = f"continue at {name}'s authorization server: {location}"
        response = render(request, visitor, "done.html", ok=True, message=message)
        response.headers["HX-Redirect"] = location
        return response

    async def drain_replica(request: Request, visitor: Visitor) -> Response:
        replica = request.path_params["replica"]
        return _answer(request, visitor, drain(gateway, replica, drained=True))

    async def admit_replica(request: Request, visitor: Visitor) -> Response:
        replica = request.path_params["replica"]
        return _answer(request, visitor, drain(gateway, replica, drained=False))

    def _answer(request: Request, visitor: Visitor, answer: Response) -> Response:
        """The admin API's answer to an action, shown as the console's message."""
        body = json.loads(bytes(answer.body))
        ok = answer.status_code < 400
        message = body.get("error") if not ok else json.dumps(body)
        return render(request, visitor, "done.html", answer.status_code, ok=ok, message=message)

    return [
        Route("/ui", home),
        Route("/ui/login", login, methods=["GET", "POST"]),
        Route("/ui/logout", guarded(logout), methods=["POST"]),
        Route("/ui/servers", guarded(servers)),
        Route("/ui/servers/rows", guarded(server_rows, fragment=True)),
        Route("/ui/catalog", guarded(catalog)),
        Route("/ui/catalog/rows", guarded(catalog_rows, fragment=True)),
        Route("/ui/traffic", guarded(traffic)),
        Route("/ui/traffic/panel", guarded(traffic_panel, fragment=True)),
        Route("/ui/tools/{name:path}", guarded(tool), methods=["GET", "POST"]),
        Route("/ui/actions", guarded(actions)),
        Route("/ui/actions/approve-pins", guarded(approve), methods=["POST"]),
        Route("/ui/actions/reload", guarded(reload), methods=["POST"]),
        Route("/ui/actions/servers", guarded(add_server), methods=["POST"]),
        Route("/ui/actions/servers/{name}/remove", guarded(remove_server), methods=["POST"]),
        Route("/ui/actions/servers/{name}/sign-in", guarded(sign_in), methods=["POST"]),
        Route("/ui/actions/replicas/{replica}/drain", guarded(drain_replica), methods=["POST"]),
        Route("/ui/actions/replicas/{replica}/admit", guarded(admit_replica), methods=["POST"]),
        Mount("/ui/static", StaticFiles(directory=_HERE / "static"), name="ui-static"),
    ]


async def _approve_pins(gateway: ConsoleHost) -> dict[str, Any]:
    """What `mcp-agg lock` writes, from the running catalog: every tool as it is now
    (withheld ones too); the entries of servers that are down are kept. The catalog is
    then rebuilt, which reads the new lock."""
    config = gateway.config
    path = config.base_dir / config.gateway.lock_file
    try:
        previous = read_lock(path)
    except ConfigError:
        previous = None  # a broken lock is replaced whole, as `mcp-agg lock` does
    down = [
        name
        for name, group in gateway.groups.items()
        if not any(replica.available for replica in group.replicas)
    ]
    pinned = lock_catalog(gateway.catalog, gateway.pinner.withheld, previous, keep=down)
    try:
        write_lock(path, pinned)
    except OSError as exc:
        return {"ok": False, "message": f"cannot write {path}: {exc.strerror or exc}"}
    await gateway.announcer.refresh()
    logger.info("console: %d tools pinned in %s", len(pinned.tools), path)
    return {"ok": True, "message": f"{len(pinned.tools)} tools pinned in {path.name}"}
