"""Lines of at most `limit` bytes out of a byte stream; a longer one is dropped unheld.

The stdio front reads its client's messages, one a line, with this instead of a stream
reader's `readline`: asyncio's raises on a line over its limit (the error would end the
gateway) and holds the line up to it, and a line without a limit can take all memory.
Here a line's pieces are kept until it ends or passes `limit`; past it they are let go
and the rest of the line streams through a `Skeleton`, which keeps only its top level,
so that the refusal can name the request's id. Linear in the bytes read: each byte is
copied once into the pieces and once into its line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mcp_agg.front.skeleton import Skeleton

__all__ = ["LineSplitter", "Oversized"]


@dataclass(frozen=True, slots=True)
class Oversized:
    """A line longer than the limit, discarded as it streamed past."""

    #: Its length in bytes (without the newline).
    size: int
    #: Its top level as JSON (`Skeleton.value`): enough to read an id and a method.
    head: Any


class LineSplitter:
    """Splits chunks into lines (without their newline) of at most `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pieces: list[bytes] = []
        self._size = 0
        #: While a line over the limit streams past: its top level, and its size so far.
        self._skeleton: Skeleton | None = None

    def feed(self, chunk: bytes) -> Iterator[bytes | Oversized]:
        """The lines that `chunk` completes, in order; the unfinished rest is kept."""
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:end])
            yield self._take()
            start = end + 1
        if start < len(chunk):
            self._add(chunk[start:])

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._skeleton is not None:
            self._skeleton.feed(piece)
        elif self._size > self._limit:
            self._skeleton = Skeleton()
            for held in self._pieces:
                self._skeleton.feed(held)
            self._skeleton.feed(piece)
            self._pieces.clear()
        else:
            self._pieces.append(piece)

    def _take(self) -> bytes | Oversized:
        line: bytes | Oversized
        if self._skeleton is not None:
            line = Oversized(self._size, self._skeleton.value())
            self._skeleton = None
        elif len(self._pieces) == 1:
            line = self._pieces[0]
        else:
            line = b"".join(self._pieces)
        self._pieces.clear()
        self._size = 0
        return line
