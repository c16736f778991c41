"""What the commands print besides JSON: tables, and the message that ends a failed command.

No typer here: `serve`'s long run ends with `fail` too, once typer is gone (`longrun`).
"""

from __future__ import annotations

import sys

__all__ = ["fail", "first_line", "print_table"]


def fail(code: int, message: str) -> SystemExit:
    """Print `mcp-agg: message` on stderr and exit with `code` (1 runtime, 2 usage/config)."""
    print(f"mcp-agg: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 70 else line[:67] + "..."


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
