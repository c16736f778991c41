"""A backend with one read-only tool, `ask`, whose answer a test sets (fan-out tests).

Options (each also read from the environment variable named in brackets):
`--answer TEXT` [ANSWERS_ANSWER] the answer (default "42"); `--fail` [ANSWERS_FAIL=1]
answer with a tool error instead; `--delay SECONDS` [ANSWERS_DELAY] wait before
answering; `--structured` [ANSWERS_STRUCTURED=1] also answer `{"answer": TEXT}` as
structured content, with a text that differs from one process to the next (its pid);
`--log-file PATH` [ANSWERS_LOG] append `PID start`, `PID done` or `PID cancelled` for
every call, so a test can see a call cancelled. Served over stdio, or over streamable
HTTP with `--transport http --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import mcp_types
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import ToolResult

env = os.environ.get
parser = argparse.ArgumentParser()
parser.add_argument("--answer", default=env("ANSWERS_ANSWER", "42"))
parser.add_argument("--fail", action="store_true", default=env("ANSWERS_FAIL") == "1")
parser.add_argument("--delay", type=float, default=float(env("ANSWERS_DELAY", "0")))
parser.add_argument("--structured", action="store_true", default=env("ANSWERS_STRUCTURED") == "1")
parser.add_argument("--log-file", default=env("ANSWERS_LOG"))
parser.add_argument("--transport", default="stdio", choices=["stdio", "http"])
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()

mcp = FastMCP("answers")


def log(event: str) -> None:
    if args.log_file:
        with open(args.log_file, "a") as file:
            file.write(f"{os.getpid()} {event}\n")


@mcp.tool(annotations=mcp_types.ToolAnnotations(readOnlyHint=True))
async def ask(question: str) -> ToolResult:
    """Answer a question (always the same answer)."""
    log("start")
    try:
        await asyncio.sleep(args.delay)
    except asyncio.CancelledError:
        log("cancelled")
        raise
    log("done")
    if args.fail:
        raise ToolError(f"cannot answer {question!r}")
    if args.structured:
        return ToolResult(
            content=f"pid {os.getpid()} says {args.answer}",
            structured_content={"answer": args.answer},
        )
    return ToolResult(content=args.answer)


if __name__ == "__main__":
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
