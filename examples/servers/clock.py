"""A small clock server meant to run as a network backend (HTTP by default, or SSE).

It gives the gateway a remote backend to front, a slow tool (``sleep_ms``) to exercise
timeouts and concurrency, and a tool that always fails (``fail``) to show tool errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from mcp_types import ToolAnnotations

mcp = FastMCP(
    name="clock",
    instructions="Tells the time in any IANA time zone; also echo, sleep and fail for testing.",
)

# Expected user errors are logged at INFO so the default WARNING level keeps stderr quiet.
_QUIET = logging.INFO
MAX_SLEEP_MS = 60_000
COMMON_ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
]


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
def now(tz: str = "UTC") -> str:
    """Current time in the given IANA zone as ISO 8601 (seconds precision, with offset)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        # ValueError covers malformed keys such as absolute paths or "../".
        raise ToolError(f"unknown time zone {tz!r}", log_level=_QUIET) from exc
    return datetime.now(zone).isoformat(timespec="seconds")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False))
async def sleep_ms(ms: int) -> str:
    """Sleep without blocking the server, to exercise timeouts and concurrent calls."""
    if not 0 <= ms <= MAX_SLEEP_MS:
        raise ToolError(f"ms must be between 0 and {MAX_SLEEP_MS}", log_level=_QUIET)
    await asyncio.sleep(ms / 1000)
    return f"slept {ms} ms"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False))
def echo(text: str) -> str:
    """Return the text unchanged: the simplest round trip through a gateway."""
    return text


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False))
def fail(message: str) -> str:
    """Always fail with the given message, to show how a tool error reaches the client."""
    raise ToolError(message, log_level=_QUIET)


@mcp.resource("clock://zones", name="zones", mime_type="text/plain")
def zones() -> str:
    """A few common IANA time zone names, one per line (any IANA name works with `now`)."""
    return "\n".join(COMMON_ZONES)


def main(argv: list[str] | None = None) -> None:
    """Parse transport options; HTTP is the default because this demo is a remote backend."""
    parser = argparse.ArgumentParser(description="Demo MCP clock server")
    parser.add_argument("--transport", choices=["http", "sse", "stdio"], default="http")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3511)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.transport == "stdio":
        mcp.run(transport="stdio", show_banner=False, log_level=args.log_level)
    else:
        # http serves streamable HTTP at /mcp; sse serves GET /sse plus POST /messages/.
        mcp.run(
            transport=args.transport,
            show_banner=False,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
        )


if __name__ == "__main__":
    main()
