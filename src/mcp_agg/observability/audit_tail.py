"""The last calls as the audit log has them, read from the end of its file.

The console's recent calls come from here when `[gateway] audit_log` is set: the audit
line carries the client, which the metrics' in-memory records do not. Only the last
`TAIL_BYTES` of the file are read (a log of months costs what one of minutes does), in a
worker thread; the first line of that span may be cut and the last one half written, and
a line that is not an audit line (edited by hand, another program's) is skipped.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

__all__ = ["TAIL_BYTES", "AuditLine", "read_tail", "recent_lines"]

#: Bytes read from the end of the audit log (a line is ~200 bytes: some 300 calls).
TAIL_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AuditLine:
    """One audit line's fields the console shows (`audit.py` describes them)."""

    at: float
    client: str | None
    tool: str
    server: str | None
    outcome: str
    duration_ms: float
    replica: str | None
    error: str | None


def read_tail(path: Path, count: int, span: int = TAIL_BYTES) -> list[AuditLine]:
    """Up to `count` calls from the last `span` bytes of `path`, newest first; none if
    there is no file yet (no call was audited). Other `OSError`s are raised."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            # One byte before the span: if it is a newline, the span's first line is whole.
            start = max(0, size - span - 1)
            file.seek(start)
            data = file.read(size - start)
    except FileNotFoundError:
        return []
    if start > 0:
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    lines: list[AuditLine] = []
    for raw in reversed(data.split(b"\n")):
        if len(lines) >= count:
            break
        line = _parsed(raw)
        if line is not None:
            lines.append(line)
    return lines


async def recent_lines(path: Path, count: int) -> list[AuditLine]:
    """`read_tail` in a worker thread: the event loop never waits on the disk."""
    return await anyio.to_thread.run_sync(read_tail, path, count)


def _parsed(raw: bytes) -> AuditLine | None:
    try:
        line = json.loads(raw)
        if not isinstance(line, dict):
            return None
        return AuditLine(
            at=datetime.datetime.fromisoformat(line["time"]).timestamp(),
            client=_text(line.get("client")),
            tool=_required(line["tool"]),
            server=_text(line.get("server")),
            outcome=_required(line["outcome"]),
            duration_ms=float(line["duration_ms"]),
            replica=_text(line.get("replica")),
            error=_text(line.get("error")),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _required(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
