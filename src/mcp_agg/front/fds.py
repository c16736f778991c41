"""The stdio front's descriptors, as both of its readers see them: the front itself
(`stdio.py`) and the thread that answers the handshake before the MCP stack is imported
(`earlyinit.py`), which is why nothing here imports more than the standard library."""

from __future__ import annotations

import os
import selectors

__all__ = ["pollable", "write_all"]


def pollable(fd: int, events: int) -> bool:
    """Whether `fd` can be waited on for `events`: a pipe, a socket or a terminal can; a
    regular file, or a device such as /dev/null, cannot (epoll refuses them)."""
    with selectors.DefaultSelector() as selector:
        try:
            selector.register(fd, events)
        except (OSError, ValueError):
            return False
    return True


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, waiting for room when it is non-blocking."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_WRITE)
                selector.select()
