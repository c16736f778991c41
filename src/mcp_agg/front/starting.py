"""Both fronts while the gateway starts: the handshake answered at once, the rest held.

A client that starts the gateway waits for its answer to `initialize` before anything
else, and the gateway's lifespan (`Gateway.running()`) ends only once every backend has
connected, or failed, and the catalog is built: seconds for a slow backend, up to
`connect_timeout`. So the front serves from the start and enters the lifespan beside
the serving (`lifespan_beside`), and the session's messages pass through `UntilStarted`:
`initialize`, `server/discover`, `ping` and notifications go to the server at once (the
SDK answers them from the server's options: they need no catalog); the first other
request (a list, a call) waits until the lifespan has started, and with it everything
the client sent after it, in order. A list is so never partial: it comes from the
complete catalog, within the bound the lifespan has (`connect_timeout`, plus the time a
first attempt gets to tear down); a backend that joins later is announced by the
catalog's `list_changed` (`core/announce.py`).

The HTTP front does the same with each POST (`HeldUntilStarted`, an ASGI layer): the MCP
app's own lifespan (the SDK's session manager, which answers `initialize`) runs from the
start, the server's lifespan beside it (`serving_beside` keeps the session manager from
entering it first and waiting on it), and a POST carrying a request but for `AT_ONCE`
waits until the lifespan has started; if it never does (a stop, a failed start), it is
answered with an error at once instead. `/readyz` still says 503 until then, so a fleet's
balancer keeps a starting replica out of rotation (`front/probes.py`); a client that
reaches it anyway (the one that started it, a benchmark) gets its handshake at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.abc
import orjson
from fastmcp import FastMCP
from mcp.server.lowlevel.server import Server
from mcp.shared.message import SessionMessage
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_agg.front.bodylimit import read_body

__all__ = ["AT_ONCE", "HeldUntilStarted", "UntilStarted", "lifespan_beside", "serving_beside"]

#: The requests answered while the gateway starts: the handshakes of both protocol eras,
#: and `ping`.
AT_ONCE = frozenset({"initialize", "server/discover", "ping"})

Item = SessionMessage | Exception


class UntilStarted(anyio.abc.ObjectReceiveStream[Item]):
    """The session's messages, the first that needs the catalog held until `started`.

    Once started it is a plain pass-through: one attribute test per message.
    """

    def __init__(self, inner: anyio.abc.ObjectReceiveStream[Item], started: anyio.Event):
        self._inner = inner
        self._started = started

    async def receive(self) -> Item:
        item = await self._inner.receive()
        if not self._started.is_set() and _waits(item):
            await self._started.wait()
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()


def _waits(item: Item) -> bool:
    """Whether this message needs the started gateway: a request but for `AT_ONCE`."""
    if not isinstance(item, SessionMessage):
        return False  # a line that is no message: answered with its error at once
    message: Any = item.message
    return hasattr(message, "id") and getattr(message, "method", None) not in AT_ONCE


@contextlib.asynccontextmanager
async def lifespan_beside(server: FastMCP[Any]) -> AsyncIterator[anyio.Event]:
    """The server's lifespan (every backend), entered in a task of its own while the
    caller serves; the event is set once it has started. A lifespan that fails to start
    (a name collision the config made) cancels the serving and raises. Left when the
    caller is done, the lifespan ends (every backend stopped and reaped).

    FastMCP has no public way to serve stdio with streams of one's own: its lifespan
    manager is entered here as `run_stdio_async` does, in one task, since it must be
    left in the task that entered it.
    """
    started, done = anyio.Event(), anyio.Event()

    async def run() -> None:
        async with server._lifespan_manager():
            started.set()
            await done.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, name="lifespan")
        try:
            yield started
        finally:
            done.set()


class HeldUntilStarted:
    """ASGI layer of the HTTP front: a POST that needs the catalog held until the gateway
    has started (module docstring), or refused if it never does. Once started it is a
    plain pass-through: one attribute test per request.

    It sits inside the body limit (`front/bodylimit.py`), so the body it reads to find
    the method is bounded by `max_message_bytes`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._settled = anyio.Event()
        self._started = False

    def settle(self, *, started: bool) -> None:
        """The lifespan has started (`started`), or never will: release what is held,
        to be served or refused. The first call decides."""
        if not self._settled.is_set():
            self._started = started
            self._settled.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._started or scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, receive = await read_body(receive)
        if _body_waits(body):
            await self._settled.wait()
            if not self._started:
                await _refuse(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _body_waits(body: bytes) -> bool:
    """Whether a POST's body needs the started gateway: a request (or a batch holding
    one) but for `AT_ONCE`. A body that is no JSON passes, to get its error at once."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    messages = value if isinstance(value, list) else [value]
    return any(
        isinstance(m, dict) and "id" in m and "method" in m and m["method"] not in AT_ONCE
        for m in messages
    )


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request held while the gateway started, when it did not: -32000,
    the code of the drain's refusals (the server is not taking requests)."""
    error = {"code": -32000, "message": "mcp-agg stopped before it started"}
    response = JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=503)
    await response(scope, receive, send)


@contextlib.contextmanager
def serving_beside(server: FastMCP[Any]) -> Iterator[None]:
    """While it lasts, the low-level server's lifespan is an empty one, for the HTTP
    front: the SDK's session manager enters that lifespan when it starts, and FastMCP's
    is the server's own (every backend), so the session manager could not answer
    `initialize` before every backend had started. `lifespan_beside` enters the server's
    lifespan instead; the sessions get the empty state the stdio front gives its own
    (FastMCP's default lifespan yields no state either).
    """
    low_level: Server[Any] = server._mcp_server
    own = low_level.lifespan
    low_level.lifespan = _empty_lifespan
    try:
        yield
    finally:
        low_level.lifespan = own


@contextlib.asynccontextmanager
async def _empty_lifespan(_: Server[Any]) -> AsyncIterator[dict[str, Any]]:
    yield {}
