"""A backend with many tools (300 by default), each with a description of its own.

Tool `probe_NNN` is described by a made-up word of its own (`word(N)`: `bababa` for 0,
`bacefo` for 17), so a search for that word has exactly one right answer; calling it
with `x` answers `probe_NNN got x`. `convert_temperature` is one realistic tool among them.
`grow` adds `count` more probe tools at runtime and tells the client the list changed.
"""

from __future__ import annotations

import argparse

from fastmcp import Context, FastMCP

SYLLABLES = ["ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se", "ti", "vo"]


def word(n: int) -> str:
    """A made-up word, different for every n (base-14 digits as syllables, 3 or more)."""
    digits = []
    while True:
        n, digit = divmod(n, len(SYLLABLES))
        digits.append(SYLLABLES[digit])
        if n == 0 and len(digits) >= 3:
            return "".join(reversed(digits))


mcp = FastMCP("many")
added = 0


def add_probe(n: int) -> None:
    name = f"probe_{n:03d}"

    def probe(x: str = "") -> str:
        return f"{name} got {x}"

    mcp.tool(probe, name=name, description=f"Reads the {word(n)} gauge of probe station {n}.")


@mcp.tool
def convert_temperature(celsius: float) -> float:
    """Convert a temperature from Celsius to Fahrenheit."""
    return celsius * 9 / 5 + 32


@mcp.tool
async def grow(count: int, ctx: Context) -> str:
    """Adds `count` more probe tools and announces the change."""
    global added
    for n in range(added, added + count):
        add_probe(n)
    added += count
    await ctx.session.send_tool_list_changed()
    return f"{added} probes"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--transport", default="stdio", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    for n in range(args.count):
        add_probe(n)
    added = args.count
    if args.transport == "http":
        mcp.run(transport="http", port=args.port, show_banner=False, log_level="WARNING")
    else:
        mcp.run(show_banner=False, log_level="WARNING")
