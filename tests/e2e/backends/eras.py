"""A modern-era backend (MCP 2026-07-28) that asks its client for input and sends
cache hints.

Its tools ask the way the modern era asks: they answer with an input-required result
(SEP-2322) carrying an elicitation or a sampling request, and read the client's answers
on the retry. Every cacheable result it sends carries `--ttl` seconds and `public`.
`--events-file` receives one line per round a tool saw (`ask round 1`, `ask answered`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mcp_types
from fastmcp import Context, FastMCP

parser = argparse.ArgumentParser()
parser.add_argument("--events-file", required=True)
parser.add_argument("--ttl", type=int, default=60)
args = parser.parse_args()

mcp = FastMCP("eras", cache_ttl=args.ttl, cache_scope="public")


def record(event: str) -> None:
    with Path(args.events_file).open("a") as f:
        f.write(event + "\n")


@mcp.tool
async def ask(question: str, ctx: Context) -> str | mcp_types.InputRequiredResult:
    """Ask the client `question` (elicitation), then sample with its answer."""
    answers = ctx.input_responses or {}
    elicited = answers.get("question")
    sampled = answers.get("sample")
    if isinstance(elicited, mcp_types.ElicitResult) and ctx.request_state == "asked":
        record("ask answered")
        said = (elicited.content or {}).get("value")
        request = mcp_types.CreateMessageRequest(
            params=mcp_types.CreateMessageRequestParams(
                messages=[
                    mcp_types.SamplingMessage(
                        role="user", content=mcp_types.TextContent(type="text", text=str(said))
                    )
                ],
                max_tokens=10,
            )
        )
        return mcp_types.InputRequiredResult(
            input_requests={"sample": request}, request_state=f"said:{said}"
        )
    state = ctx.request_state or ""
    if isinstance(sampled, mcp_types.CreateMessageResult) and state.startswith("said:"):
        record("ask sampled")
        content = sampled.content
        text = content.text if isinstance(content, mcp_types.TextContent) else "?"
        return f"{state.removeprefix('said:')} / {text}"
    record("ask round 1")
    request = mcp_types.ElicitRequest(
        params=mcp_types.ElicitRequestFormParams(
            message=question,
            requested_schema={
                "type": "object",
                "properties": {"value": {"type": "string"}},
                "required": ["value"],
            },
        )
    )
    return mcp_types.InputRequiredResult(
        input_requests={"question": request}, request_state="asked"
    )


@mcp.resource("data://eras/fact")
def fact() -> str:
    return "water is wet"


if __name__ == "__main__":
    mcp.run(show_banner=False)
