"""What the commands print besides JSON: tables, and the message that ends a failed command."""

from __future__ import annotations

import typer

__all__ = ["fail", "first_line", "print_table"]


def fail(code: int, message: str) -> typer.Exit:
    """Print `mcp-agg: message` on stderr and exit with `code` (1 runtime, 2 usage/config)."""
    typer.echo(f"mcp-agg: {message}", err=True)
    raise typer.Exit(code)


def first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 70 else line[:67] + "..."


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
