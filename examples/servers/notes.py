"""A file-backed notes server: a stateful demo backend for the mcp-agg gateway.

Each note is one UTF-8 Markdown file in ``$NOTES_DIR`` (default ``./notes-data``), so the
state survives restarts and two backends can be pointed at different folders.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path

from fastmcp import FastMCP
from fastmcp.exceptions import PromptError, ResourceError, ToolError
from mcp_types import ToolAnnotations

mcp = FastMCP(
    name="notes",
    instructions="Keeps short Markdown notes on disk. Titles are the note identifiers.",
)

_UNSAFE = re.compile(r"[^A-Za-z0-9 ._-]+")
_DOTS = re.compile(r"\.{2,}")
_MAX_TITLE = 100
# Expected user errors are logged at INFO so the default WARNING level keeps stderr quiet.
_QUIET = logging.INFO


def _notes_dir() -> Path:
    """Resolve the folder on every call so tests can change NOTES_DIR after import."""
    folder = Path(os.environ.get("NOTES_DIR", "notes-data")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _safe_title(title: str) -> str:
    """Map a title to a file stem that cannot escape the notes folder or be hidden."""
    cleaned = _DOTS.sub(".", _UNSAFE.sub("_", " ".join(title.split())))
    cleaned = cleaned.strip(" .")[:_MAX_TITLE].strip(" .")
    if not cleaned:
        raise ToolError(f"invalid note title {title!r}", log_level=_QUIET)
    return cleaned


def _note_path(title: str) -> Path:
    return _notes_dir() / f"{_safe_title(title)}.md"


def _all_titles() -> list[str]:
    return sorted(p.stem for p in _notes_dir().glob("*.md") if p.is_file())


def _read(title: str) -> str | None:
    """Return the note body, or None when the note does not exist."""
    try:
        path = _note_path(title)
    except ToolError:
        return None
    return path.read_text(encoding="utf-8") if path.is_file() else None


@mcp.tool(annotations=ToolAnnotations(title="Add note", idempotentHint=True))
def add_note(title: str, body: str) -> dict[str, str | int]:
    """Create or overwrite a note; returns the stored (sanitized) title and body length."""
    path = _note_path(title)
    path.write_text(body, encoding="utf-8")
    return {"title": path.stem, "chars": len(body)}


@mcp.tool(annotations=ToolAnnotations(title="List notes", readOnlyHint=True))
def list_notes() -> list[str]:
    """List the titles of all notes, sorted."""
    return _all_titles()


@mcp.tool(annotations=ToolAnnotations(title="Read note", readOnlyHint=True))
def read_note(title: str) -> str:
    """Return the body of a note."""
    body = _read(title)
    if body is None:
        raise ToolError(f"no note titled {title!r}", log_level=_QUIET)
    return body


@mcp.tool(
    annotations=ToolAnnotations(title="Delete note", destructiveHint=True, idempotentHint=True)
)
def delete_note(title: str) -> str:
    """Delete a note; deleting a missing note is not an error, so retries are safe."""
    try:
        path = _note_path(title)
    except ToolError:
        return f"no note titled {title!r}; nothing deleted"
    if not path.is_file():
        return f"no note titled {title!r}; nothing deleted"
    path.unlink()
    return f"deleted note {path.stem!r}"


@mcp.tool(annotations=ToolAnnotations(title="Search notes", readOnlyHint=True))
def search_notes(query: str) -> list[str]:
    """Return titles whose title or body contains the query, ignoring case."""
    needle = query.casefold()
    folder = _notes_dir()
    hits: list[str] = []
    for title in _all_titles():
        body = (folder / f"{title}.md").read_text(encoding="utf-8")
        if needle in title.casefold() or needle in body.casefold():
            hits.append(title)
    return hits


@mcp.resource("notes://index", name="index", mime_type="text/plain")
def index() -> str:
    """All note titles, one per line."""
    return "\n".join(_all_titles())


@mcp.resource("notes://note/{title}", name="note", mime_type="text/markdown")
def note(title: str) -> str:
    """The body of one note (percent-encode spaces in the URI)."""
    body = _read(title)
    if body is None:
        raise ResourceError(f"no note titled {title!r}", log_level=_QUIET)
    return body


@mcp.prompt(name="summarize_note")
def summarize_note(title: str, style: str = "bullet points") -> str:
    """Ask the model to summarize one note in the requested style."""
    body = _read(title)
    if body is None:
        raise PromptError(f"no note titled {title!r}", log_level=_QUIET)
    return (
        f"Summarize the note titled {title!r} as {style}.\n\n"
        f"--- note start ---\n{body}\n--- note end ---"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse transport options; stdio is the default because that is how gateways spawn us."""
    parser = argparse.ArgumentParser(description="Demo MCP notes server")
    parser.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3509)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.transport == "stdio":
        mcp.run(transport="stdio", show_banner=False, log_level=args.log_level)
    else:
        mcp.run(
            transport=args.transport,
            show_banner=False,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
        )


if __name__ == "__main__":
    main()
