"""The top level of a JSON text, kept while the text streams past unheld.

A message too large to keep is still a request with an id, and JSON-RPC wants its error
answered under that id: a client would otherwise wait out its own timeout. `Skeleton`
is fed the text chunk by chunk and keeps only its top level: every nested object or
array becomes `0` and every long string `""`. `{"method": "tools/call", "params":
{...70 MB...}, "id": 42}` leaves `{"method": "tools/call", "params": 0, "id": 42}`,
which `json.loads` reads.

Reading costs a regex search per string or bracket, and there may be one every few
bytes, so only the first `scan` bytes are read that way (what is kept of them is no
longer). Past them the members completed so far are what is known, and the last bytes
are looked at for a final `"id": ...}`: where the TypeScript SDK puts a request's id,
after its params. The SDKs put the other members (`jsonrpc`, `method`, and in Python's
the `id` too) before the params.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["Skeleton"]

#: What changes the state outside a string, and inside one.
_OUTSIDE = re.compile(rb'["{}\[\]]')
_INSIDE = re.compile(rb'["\\]')
#: A top-level string longer than this is kept as `""` (ids, methods and versions are short).
_LONGEST_STRING = 256
#: The text's last bytes, kept for its last member; and that member when it is the id.
_TAIL = 256
_LAST_ID = re.compile(rb'[,{]\s*"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")\s*}\s*$')


class Skeleton:
    """The top level of one JSON text fed in chunks (module docstring)."""

    def __init__(self, *, scan: int = 64 * 1024) -> None:
        self._unscanned = scan
        self._kept = bytearray()
        #: Where the last top-level member ended in `_kept` (its comma), if one has.
        self._boundary = 0
        self._depth = 0
        self._in_string = False
        #: A backslash ended the last chunk inside a string: the next byte is escaped.
        self._escaped = False
        #: Where the current top-level string starts in `_kept`, while it is kept.
        self._string_start: int | None = None
        #: Whether a part of the text was past `scan`, and not read.
        self._truncated = False
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        self._tail = (self._tail + chunk[-_TAIL:])[-_TAIL:]
        if len(chunk) > self._unscanned:
            chunk, self._truncated = chunk[: self._unscanned], True
        self._unscanned -= len(chunk)
        pos, end = 0, len(chunk)
        while pos < end:
            if self._escaped:
                self._keep_string(chunk[pos : pos + 1])
                self._escaped, pos = False, pos + 1
            elif self._in_string:
                pos = self._through_string(chunk, pos)
            else:
                pos = self._through_structure(chunk, pos)

    def value(self) -> Any:
        """The top level read as JSON; None when it is not JSON.

        When the text was longer than `scan`, an object's members known so far: those
        completed within it, and the id when it is the last member.
        """
        if self._truncated:
            return self._known_members()
        if self._depth or self._in_string:
            return None
        try:
            return json.loads(self._kept)
        except ValueError:
            return None

    def _known_members(self) -> dict[str, Any] | None:
        if not self._kept.lstrip().startswith(b"{"):
            return None
        members: dict[str, Any] = {}
        if self._boundary:
            try:
                members = json.loads(self._kept[: self._boundary] + b"}")
            except ValueError:
                return None
        last = _LAST_ID.search(self._tail)
        if last is not None:
            members["id"] = json.loads(last.group(1))
        return members

    def _through_string(self, chunk: bytes, pos: int) -> int:
        found = _INSIDE.search(chunk, pos)
        if found is None:
            self._keep_string(chunk[pos:])
            return len(chunk)
        at = found.start()
        self._keep_string(chunk[pos : at + 1])
        if chunk[at] == 0x5C:  # a backslash: the next byte, maybe in the next chunk, is escaped
            if at + 1 == len(chunk):
                self._escaped = True
                return at + 1
            self._keep_string(chunk[at + 1 : at + 2])
            return at + 2
        self._in_string = False
        if self._string_start is None and self._depth == 1:
            self._kept += b'""'  # it was too long to keep: an empty string stands for it
        self._string_start = None
        return at + 1

    def _through_structure(self, chunk: bytes, pos: int) -> int:
        found = _OUTSIDE.search(chunk, pos)
        at = len(chunk) if found is None else found.start()
        if self._depth <= 1:
            between = chunk[pos:at]
            if self._depth == 1 and (comma := between.rfind(b",")) >= 0:
                self._boundary = len(self._kept) + comma
            self._kept += between
        if found is None:
            return at
        token = chunk[at : at + 1]
        if token == b'"':
            self._in_string = True
            if self._depth <= 1:
                self._string_start = len(self._kept)
                self._kept += token
        elif token in (b"{", b"["):
            self._depth += 1
            if self._depth == 1:
                self._kept += token
            elif self._depth == 2:
                self._kept += b"0"  # a nested value, unread
        else:
            if self._depth == 1:
                self._kept += token
            self._depth = max(self._depth - 1, 0)
        return at + 1

    def _keep_string(self, piece: bytes) -> None:
        """Part of a string: kept at the top level until it proves too long."""
        start = self._string_start
        if start is None:
            return
        if len(self._kept) + len(piece) - start > _LONGEST_STRING:
            del self._kept[start:]
            self._string_start = None
            return
        self._kept += piece
