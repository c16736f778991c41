"""The fronts' signal handling: SIGINT and SIGTERM stop the gateway, SIGHUP reloads it.

A stop signal must always unwind the lifespan, which stops and reaps every backend, so
the signals stay the gateway's while it serves: uvicorn would take over SIGINT/SIGTERM
and raise the signal again once it has shut down, which kills the process before the
lifespan has unwound. SIGHUP (when the caller gives `on_reload`) starts a reload beside
the serving, and signals keep being handled while it runs.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import anyio
import uvicorn

__all__ = ["Hurry", "Reload", "SignalFreeUvicorn", "handle_signals"]

logger = logging.getLogger("mcp_agg")

#: Reloads the config (`mcp_agg.core.reload.reload_from_file`); must not raise.
Reload = Callable[[], Coroutine[Any, Any, None]]
#: A stop signal while stopping: make it quick (`Gateway.hurry`); False when not stopping.
Hurry = Callable[[], bool]


async def handle_signals(
    stop: Callable[[], None], on_reload: Reload | None, hurry: Hurry | None
) -> None:
    """SIGINT/SIGTERM call `stop`, or `hurry` once the gateway is stopping anyway; SIGHUP
    starts `on_reload` (in a task of its own).

    `stop` is called on every stop signal until then: the front drains on the first and
    stops waiting for calls in flight on the next. Without `on_reload` SIGHUP is left
    alone (its default ends the process).
    """
    wanted = [signal.SIGINT, signal.SIGTERM]
    if on_reload is not None:
        wanted.append(signal.SIGHUP)
    async with anyio.create_task_group() as reloads:
        with anyio.open_signal_receiver(*wanted) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP and on_reload is not None:
                    logger.info("received SIGHUP, reloading the config")
                    reloads.start_soon(on_reload, name="reload")
                    continue
                if hurry is not None and hurry():
                    continue  # the gateway was stopping already: now it hurries
                logger.info("received %s", signal.Signals(signum).name)
                stop()


class SignalFreeUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway's handler decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
