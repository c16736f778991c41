"""The benchmark's backend: a small FastMCP server with cheap, predictable tools.

    python bench/backend.py              # over stdio
    python bench/backend.py --port P     # over streamable HTTP at http://127.0.0.1:P/mcp

Each tool isolates one cost: `echo` the round trip, `add` argument parsing, `sleep_ms`
concurrency (it yields to the event loop), `blob` the size of a result, `lookup` a
read-only call a gateway may answer from its cache.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools

from fastmcp import FastMCP

mcp: FastMCP = FastMCP("bench-backend")

#: One KiB of text, so `blob(kb)` is exactly kb KiB.
_KIB = ("0123456789abcdef" * 64)[:1024]
#: How many times `lookup` ran in this process (`next` on a count is atomic in CPython,
#: and FastMCP runs sync tools in threads).
_LOOKUPS = itertools.count(1)


@mcp.tool
def echo(text: str) -> str:
    """Return `text` unchanged."""
    return text


@mcp.tool
def add(a: float, b: float) -> float:
    """Return a + b."""
    return a + b


@mcp.tool
async def sleep_ms(ms: int) -> str:
    """Sleep `ms` milliseconds without blocking the server, then say so."""
    await asyncio.sleep(ms / 1000)
    return f"slept {ms} ms"


@mcp.tool
def blob(kb: int) -> str:
    """Return `kb` KiB of text."""
    return _KIB * kb


@mcp.tool(annotations={"readOnlyHint": True})
def lookup(key: str) -> str:
    """Return `key` and how many lookups this process has answered, `key#n`: an answer a
    cache gave again repeats its `n`, one the backend gave has a new one."""
    return f"{key}#{next(_LOOKUPS)}"


def main() -> None:
    """Serve over stdio, or over streamable HTTP on 127.0.0.1 with `--port`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="serve streamable HTTP on this port")
    port = parser.parse_args().port
    if port is None:
        mcp.run(show_banner=False, log_level="WARNING")
    else:
        mcp.run("http", show_banner=False, log_level="WARNING", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
