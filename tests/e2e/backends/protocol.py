"""A backend that uses every part of the protocol a gateway must relay.

Its tools report progress, log, ask the client for elicitation, sampling and roots,
wait to be cancelled, add a tool at runtime, and change a subscribable resource;
its prompt and resource template answer completions. `--events-file` receives one
line per thing that happened on the backend's side (`started wait`, `cancelled wait`,
`subscribed URI`), so a test can see what reached it.
"""

from __future__ import annotations

import argparse
import asyncio
import warnings
from pathlib import Path
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP
from mcp.server.context import ServerRequestContext

parser = argparse.ArgumentParser()
parser.add_argument("--events-file", required=True)
parser.add_argument("--transport", default="stdio", choices=["stdio", "http"])
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()

mcp = FastMCP("protocol")
COUNTER_URI = "counter://value"
counter = 0
subscribers: dict[str, list[Any]] = {}


def record(event: str) -> None:
    with Path(args.events_file).open("a") as f:
        f.write(event + "\n")


@mcp.tool
async def steps(count: int, ctx: Context) -> str:
    """Reports progress `count` times and logs at debug, info and warning."""
    for step in range(1, count + 1):
        await ctx.report_progress(step, count, f"step {step}")
    await ctx.debug("debug line")
    await ctx.info("info line")
    await ctx.warning("warning line")
    return f"{count} steps"


@mcp.tool
async def ask(question: str, ctx: Context) -> str:
    """Asks the client a question (elicitation) and says what came back."""
    answer = await ctx.elicit(question, response_type=str)
    return f"{answer.action}: {getattr(answer, 'data', None)}"


@mcp.tool
async def sample(prompt: str, ctx: Context) -> str:
    """Asks the client's model (sampling) and returns its text."""
    message = mcp_types.SamplingMessage(
        role="user", content=mcp_types.TextContent(type="text", text=prompt)
    )
    result = await ctx.session.create_message(
        [message], max_tokens=50, related_request_id=ctx.request_id
    )
    content = result.content
    return content.text if isinstance(content, mcp_types.TextContent) else str(content)


@mcp.tool
async def roots(ctx: Context) -> list[str]:
    """The client's roots."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = await ctx.session.list_roots()
    return [str(root.uri) for root in result.roots]


@mcp.tool
async def wait(seconds: float) -> str:
    """Sleeps; records `started wait`, and `cancelled wait` if the request is cancelled
    first."""
    record("started wait")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record("cancelled wait")
        raise
    return "waited"


@mcp.tool
async def grow(name: str, ctx: Context) -> str:
    """Adds a tool called `name` and tells the client the tool list changed."""

    def added() -> str:
        return f"I am {name}"

    mcp.tool(added, name=name)
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@mcp.tool
async def bump() -> int:
    """Changes the counter resource and tells its subscribers."""
    global counter
    counter += 1
    for session in subscribers.get(COUNTER_URI, []):
        await session.send_resource_updated(COUNTER_URI)
    return counter


@mcp.resource(COUNTER_URI)
def counter_value() -> str:
    return str(counter)


@mcp.resource("files://{name}")
def file_named(name: str) -> str:
    return f"contents of {name}"


@mcp.prompt
def greet(name: str) -> str:
    return f"Say hello to {name}"


@mcp.completion
def complete(
    ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference,
    argument: mcp_types.CompletionArgument,
    context: Any,
) -> list[str]:
    if isinstance(ref, mcp_types.PromptReference) and ref.name == "greet":
        names = ["alice", "albert", "bob"]
    elif isinstance(ref, mcp_types.ResourceTemplateReference) and ref.uri == "files://{name}":
        names = ["readme.md", "report.txt"]
    else:
        return []
    return [n for n in names if n.startswith(argument.value)]


async def on_subscribe(
    ctx: ServerRequestContext[Any, Any], params: mcp_types.SubscribeRequestParams
) -> mcp_types.EmptyResult:
    subscribers.setdefault(str(params.uri), []).append(ctx.session)
    record(f"subscribed {params.uri}")
    return mcp_types.EmptyResult()


async def on_unsubscribe(
    ctx: ServerRequestContext[Any, Any], params: mcp_types.UnsubscribeRequestParams
) -> mcp_types.EmptyResult:
    subscribers.pop(str(params.uri), None)
    record(f"unsubscribed {params.uri}")
    return mcp_types.EmptyResult()


async def on_roots_changed(
    ctx: ServerRequestContext[Any, Any], params: mcp_types.NotificationParams | None
) -> None:
    record("roots changed")


mcp._mcp_server.add_notification_handler(
    "notifications/roots/list_changed", mcp_types.NotificationParams, on_roots_changed
)
mcp._mcp_server.add_request_handler(
    "resources/subscribe", mcp_types.SubscribeRequestParams, on_subscribe
)
mcp._mcp_server.add_request_handler(
    "resources/unsubscribe", mcp_types.UnsubscribeRequestParams, on_unsubscribe
)

if __name__ == "__main__":
    if args.transport == "http":
        mcp.run(transport="http", host="127.0.0.1", port=args.port, show_banner=False)
    else:
        mcp.run(show_banner=False)
