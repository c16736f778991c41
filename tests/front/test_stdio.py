"""Tests for mcp_agg.front.stdio: the stdio front's own pipes."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import pytest

from mcp_agg.front import stdio

linux = pytest.mark.skipif(sys.platform != "linux", reason="pipe sizes are Linux's")


@linux
def test_a_stdout_pipe_is_widened_to_hold_a_large_answer() -> None:
    read, write = os.pipe()
    try:
        assert fcntl.fcntl(write, fcntl.F_GETPIPE_SZ) < stdio._PIPE_SIZE
        stdio._widen(write)
        assert fcntl.fcntl(write, fcntl.F_GETPIPE_SZ) == stdio._PIPE_SIZE
    finally:
        os.close(read)
        os.close(write)


def test_what_is_not_a_pipe_is_left_as_it_is(tmp_path: Path) -> None:
    with (tmp_path / "out").open("wb") as file:
        stdio._widen(file.fileno())  # no error: a regular file has no pipe size
        file.write(b"still writable\n")
    assert (tmp_path / "out").read_bytes() == b"still writable\n"
