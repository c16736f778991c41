"""A modern-era backend on the SDK's own server (`MCPServer`), which serves
`subscriptions/listen`: its tools add a tool at runtime, change a resource, report
progress and log, and wait to be cancelled; its prompt logs too. `--events-file`
receives `cancelled wait`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer

parser = argparse.ArgumentParser()
parser.add_argument("--events-file", required=True)
args = parser.parse_args()

server = MCPServer("listening")
COUNTER_URI = "counter://value"
counter = 0


def record(event: str) -> None:
    with Path(args.events_file).open("a") as f:
        f.write(event + "\n")


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Adds a tool called `name`, and says the tool list changed."""

    def added() -> str:
        return f"I am {name}"

    server.add_tool(added, name=name)
    await ctx.notify_tools_changed()
    return f"added {name}"


@server.tool()
async def bump(ctx: Context) -> int:
    """Changes the counter resource, and says so."""
    global counter
    counter += 1
    await ctx.notify_resource_updated(COUNTER_URI)
    return counter


@server.resource(COUNTER_URI)
def counter_value() -> str:
    return str(counter)


@server.tool()
async def steps(count: int, ctx: Context) -> str:
    """Reports `count` steps of progress, and logs a line at each of three levels."""
    for step in range(1, count + 1):
        await ctx.report_progress(step, count, f"step {step}")
    await ctx.debug("debug line")
    await ctx.info("info line")
    await ctx.warning("warning line")
    return "done"


@server.prompt()
async def greet(name: str, ctx: Context) -> str:
    """A prompt that logs while it renders."""
    await ctx.info("prompt line")
    return f"Say hello to {name}"


@server.tool()
async def wait(seconds: float) -> str:
    """Sleeps; records `cancelled wait` if the request is cancelled first."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record("cancelled wait")
        raise
    return "waited"


if __name__ == "__main__":
    server.run()
