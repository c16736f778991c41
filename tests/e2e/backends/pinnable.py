"""A backend whose tool definitions a test can change between runs.

`greet`'s description is read from the file named by `--description-file` when the
server starts (a default when the file is missing); when the file named by
`--extra-tool-file` exists, a tool called `extra` is added. `fail` always answers with a
tool error (`isError: true`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError

parser = argparse.ArgumentParser()
parser.add_argument("--description-file", required=True)
parser.add_argument("--extra-tool-file", required=True)
args = parser.parse_args()

try:
    description = Path(args.description_file).read_text().strip()
except OSError:
    description = "Say hello."

mcp = FastMCP("pinnable")


@mcp.tool(description=description)
def greet(name: str) -> str:
    return f"hello {name}"


@mcp.tool
def fail() -> str:
    """Always fails."""
    raise ToolError("failed on purpose")


if Path(args.extra_tool_file).exists():

    @mcp.tool
    def extra() -> str:
        """A tool added after the lock was written."""
        return "extra"


if __name__ == "__main__":
    mcp.run(show_banner=False, log_level="WARNING")
