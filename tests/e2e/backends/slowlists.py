"""A backend that answers its four lists only once all four are asked for at once.

It offers one tool, one resource, one template and one prompt. Each list request
(tools, resources, templates, prompts) appends `start METHOD` to `--log-file`, then waits
until all four lists are in flight, or `--wait` seconds pass, and appends `met METHOD`
(all four were asked for together) or `alone METHOD` (they were not) before it answers.
A client that lists one after another gets every list `--wait` seconds late, and
`alone` in the log. Served over stdio, or streamable HTTP on 127.0.0.1 with `--port`.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from fastmcp import FastMCP
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

parser = argparse.ArgumentParser()
parser.add_argument("--log-file", required=True)
parser.add_argument("--wait", type=float, default=3.0)
parser.add_argument("--port", type=int)
args = parser.parse_args()

LISTS = {"tools/list", "resources/list", "resources/templates/list", "prompts/list"}


def log(event: str) -> None:
    with open(args.log_file, "a") as file:
        file.write(f"{event}\n")


class Rendezvous(Middleware):
    """Holds each list request until all four lists are in flight."""

    def __init__(self) -> None:
        self.in_flight: set[str] = set()
        self.all_asked = asyncio.Event()

    async def on_request(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        method = context.method or ""
        if method not in LISTS:
            return await call_next(context)
        log(f"start {method}")
        self.in_flight.add(method)
        if self.in_flight == LISTS:
            self.all_asked.set()
        try:
            await asyncio.wait_for(self.all_asked.wait(), args.wait)
            log(f"met {method}")
        except TimeoutError:
            log(f"alone {method}")
        return await call_next(context)


mcp = FastMCP("slowlists", middleware=[Rendezvous()])


@mcp.tool
def echo(text: str) -> str:
    """Echo the text."""
    return text


@mcp.resource("slow://readme")
def readme() -> str:
    """A resource."""
    return "readme"


@mcp.resource("slow://items/{name}")
def item(name: str) -> str:
    """A template."""
    return name


@mcp.prompt
def greet(name: str) -> str:
    """A prompt."""
    return f"Hello {name}"


if __name__ == "__main__":
    if args.port is None:
        mcp.run(show_banner=False, log_level="WARNING")
    else:
        mcp.run("http", show_banner=False, log_level="WARNING", host="127.0.0.1", port=args.port)
