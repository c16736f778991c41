"""A backend that tests can tell to fail, hang or slow down, and that counts what it runs.

Behaviour is read from the file named by `--mode-file` at every request, so a test can
change it while the process runs: `ok`, `hang`, `hold` (a call waits until the mode is
no longer `hold`), `slow:MS`, `hang-probes` (tools/list never answers, calls still
do), or `junk` (over stdio, a line that is not JSON-RPC goes to stdout before each
answer). Every tool execution appends `REPLICA TOOL KEY IDEMPOTENCY` to `--count-file`, so
a test can see what ran, where and how often.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import Middleware, MiddlewareContext

parser = argparse.ArgumentParser()
parser.add_argument("--replica", required=True)
parser.add_argument("--count-file", required=True)
parser.add_argument("--mode-file", required=True)
parser.add_argument("--transport", default="stdio", choices=["stdio", "http"])
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()

mcp = FastMCP("faulty")
READ_ONLY = mcp_types.ToolAnnotations(readOnlyHint=True)


def mode() -> str:
    try:
        return Path(args.mode_file).read_text().strip() or "ok"
    except OSError:
        return "ok"


def record(tool: str, key: str, ctx: Context | None) -> None:
    meta: Any = ctx.request_context.meta if ctx and ctx.request_context else None
    idempotency = (meta or {}).get("mcp-agg/idempotency-key", "-")
    with open(args.count_file, "a") as counts:
        counts.write(f"{args.replica} {tool} {key} {idempotency}\n")


#: What `junk` writes: one short line (atomic on a pipe), not a JSON-RPC message.
JUNK = b"faulty: this line is not JSON-RPC {\n"
#: The protocol's pipe, kept before the SDK points fd 1 at stderr to protect it: junk goes
#: where a stray print of a server on another SDK would.
WIRE = os.dup(1) if args.transport == "stdio" else None


async def behave() -> None:
    current = mode()
    if current == "junk" and WIRE is not None:
        os.write(WIRE, JUNK)
    if current == "hang":
        await asyncio.Event().wait()
    while current == "hold":
        await asyncio.sleep(0.02)
        current = mode()
    if current.startswith("slow:"):
        await asyncio.sleep(int(current.split(":")[1]) / 1000)


@mcp.tool(annotations=READ_ONLY)
async def read(key: str, ctx: Context) -> str:
    """A read-only tool: safe to retry."""
    record("read", key, ctx)
    await behave()
    return args.replica


@mcp.tool
async def write(key: str, ctx: Context) -> str:
    """A tool with side effects and no hints: never repeated after it was sent."""
    record("write", key, ctx)
    await behave()
    return args.replica


@mcp.tool
async def echo(text: str, ctx: Context) -> str:
    """Answers with its argument (a result as large as the test wants)."""
    record("echo", str(len(text)), ctx)
    await behave()
    return text


@mcp.tool
async def write_then_die(key: str, ctx: Context) -> str:
    """Runs, then the process dies before it can answer."""
    record("write_then_die", key, ctx)
    os._exit(1)


@mcp.tool(annotations=READ_ONLY)
async def fail(message: str) -> str:
    """Always a tool error (isError), never a backend failure."""
    raise ToolError(message)


class HangProbes(Middleware):
    async def on_list_tools(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        if mode() == "hang-probes":
            await asyncio.Event().wait()
        return await call_next(context)


mcp.add_middleware(HangProbes())

if __name__ == "__main__":
    with open(args.count_file, "a") as counts:
        counts.write(f"{args.replica} started - -\n")
    if args.transport == "http":
        mcp.run(
            transport="http",
            host="127.0.0.1",
            port=args.port,
            show_banner=False,
            log_level="WARNING",
        )
    else:
        mcp.run(show_banner=False, log_level="WARNING")
