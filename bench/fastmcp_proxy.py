"""FastMCP's own proxies, run as stdio servers, for comparison with mcp-agg.

    python bench/fastmcp_proxy.py mounted N BACKEND     # FastMCP() + N mounted proxies
    python bench/fastmcp_proxy.py mounted N BACKEND P   # the same over streamable HTTP, port P
    python bench/fastmcp_proxy.py mcpservers N BACKEND  # create_proxy({"mcpServers": {...}})

`mounted` is FastMCP's best composition: each backend gets one long-lived, connected
client (started in parallel, as mcp-agg does) and its proxy is mounted under the same
namespace mcp-agg uses (`b1`, `b2`, ...), so a bench client calls the same names.
`mcpservers` is the configuration-file form, which opens a new backend session (a new
process) per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from fastmcp import Client, FastMCP
from fastmcp.client.transports import StdioTransport
from fastmcp.server import create_proxy


def _names(count: int) -> list[str]:
    return [f"b{i}" for i in range(1, count + 1)]


async def _serve_mounted(count: int, backend: str, port: int | None) -> None:
    """Connect every backend in parallel, mount one proxy each, then serve stdio, or
    streamable HTTP on 127.0.0.1:`port` (listening only once every backend is connected)."""
    clients: list[Client[Any]] = [
        Client(StdioTransport(sys.executable, [backend], keep_alive=False)) for _ in range(count)
    ]
    try:
        await asyncio.gather(*(client.__aenter__() for client in clients))
        main: FastMCP = FastMCP("fastmcp-mounted")
        for name, client in zip(_names(count), clients, strict=True):
            main.mount(create_proxy(client), namespace=name)
        if port is None:
            await main.run_stdio_async(show_banner=False, log_level="WARNING")
        else:
            await main.run_http_async(
                show_banner=False, log_level="WARNING", host="127.0.0.1", port=port
            )
    finally:
        # All at once: a stdio client gives its server 2 s to exit once stdin closes,
        # and closing the backends one after another would take longer than that.
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


async def _serve_mcpservers(count: int, backend: str, port: int | None) -> None:
    if port is not None:
        sys.exit("fastmcp_proxy.py: the bench runs mcpservers over stdio only")
    config = {
        "mcpServers": {
            name: {"command": sys.executable, "args": [backend]} for name in _names(count)
        }
    }
    proxy = create_proxy(config, name="fastmcp-mcpservers")
    await proxy.run_stdio_async(show_banner=False, log_level="WARNING")


async def _until_sigterm(serving: Coroutine[Any, Any, None]) -> None:
    """Serve; SIGTERM cancels the serving so its clean-up (closing backends) still runs."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving


def main() -> None:
    """Entry point: `fastmcp_proxy.py {mounted|mcpservers} N BACKEND [PORT]`."""
    if len(sys.argv) not in {4, 5} or sys.argv[1] not in {"mounted", "mcpservers"}:
        sys.exit("usage: fastmcp_proxy.py {mounted|mcpservers} N BACKEND [PORT]")
    kind, count, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    port = int(sys.argv[4]) if len(sys.argv) == 5 else None
    serve = _serve_mounted if kind == "mounted" else _serve_mcpservers
    asyncio.run(_until_sigterm(serve(count, backend, port)))


if __name__ == "__main__":
    main()
