"""The stdio front while the gateway starts: the handshake answered at once, the rest held.

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
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
from fastmcp import FastMCP
from mcp.shared.message import SessionMessage

__all__ = ["AT_ONCE", "UntilStarted", "lifespan_beside"]

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
