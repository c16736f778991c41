"""A backend whose answers change on every call, for the gateway's response cache.

`get_count` (read-only; after `delay` seconds, to hold concurrent calls in flight
together) and `get_unmarked` (not annotated) both answer the number of calls made so
far, so a repeated answer can only have come from a cache, as does the resource
`count://reads` with the number of reads. `grow` adds a tool and tells the client the
tool list changed. `--ttl SECONDS` sends `public` cache hints (2026-07-28) for that long
on every cacheable result.
"""

from __future__ import annotations

import argparse

import anyio
from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations

parser = argparse.ArgumentParser()
parser.add_argument("--ttl", type=int)
args = parser.parse_args()

mcp = FastMCP("counting", cache_ttl=args.ttl, cache_scope=None if args.ttl is None else "public")
calls = 0
reads = 0


def count() -> int:
    global calls
    calls += 1
    return calls


@mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
async def get_count(key: str = "", delay: float = 0) -> str:
    """The number of calls so far (read-only: it only counts them)."""
    number = count()
    await anyio.sleep(delay)
    return f"{key}{number}"


@mcp.resource("count://reads")
def read_count() -> str:
    """The number of reads so far."""
    global reads
    reads += 1
    return str(reads)


@mcp.tool
def get_unmarked() -> str:
    """The number of calls so far, without annotations."""
    return str(count())


@mcp.tool
async def grow(name: str, ctx: Context) -> str:
    """Adds a tool called `name`, and says the tool list changed."""

    def added() -> str:
        return name

    mcp.tool(added, name=name)
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


if __name__ == "__main__":
    mcp.run(show_banner=False)
