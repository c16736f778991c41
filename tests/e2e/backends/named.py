"""A backend whose tools and prompts have the names given on its command line, whatever
characters they hold (`python named.py 工具 道具`).

Tool NAME answers `NAME`, so a test can tell which one a call reached; prompt NAME
answers `prompt NAME`. Served over stdio.
"""

from __future__ import annotations

import sys

from fastmcp import FastMCP

mcp = FastMCP("named")


def add(name: str) -> None:
    def tool() -> str:
        return name

    def prompt() -> str:
        return f"prompt {name}"

    mcp.tool(tool, name=name, description=f"Answers {name!r}.")
    mcp.prompt(prompt, name=name, description=f"Says {name!r}.")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        add(name)
    mcp.run(show_banner=False, log_level="WARNING")
