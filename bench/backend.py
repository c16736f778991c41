"""The benchmark's backend: a small FastMCP server with cheap, predictable tools.

Each tool isolates one cost: `echo` the round trip, `add` argument parsing, `sleep_ms`
concurrency (it yields to the event loop), `blob` the size of a result.
"""

from __future__ import annotations

import asyncio

from fastmcp import FastMCP

mcp: FastMCP = FastMCP("bench-backend")

#: One KiB of text, so `blob(kb)` is exactly kb KiB.
_KIB = ("0123456789abcdef" * 64)[:1024]


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


if __name__ == "__main__":
    mcp.run(show_banner=False, log_level="WARNING")
