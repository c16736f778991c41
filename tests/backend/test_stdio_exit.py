"""The stdio transport tells how a backend process ended, when it ended by itself."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TextIO

import anyio
import pytest

from mcp_agg.backend.transports.stdio import _process_streams


@pytest.fixture
def devnull() -> Iterator[TextIO]:
    with open(os.devnull, "w") as sink:
        yield sink


@pytest.mark.parametrize(
    ("code", "told"),
    [
        ("import sys; sys.exit(3)", [3]),
        ("pass", [0]),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", [-9]),
    ],
)
async def test_a_process_that_ends_by_itself_has_its_exit_code_told_before_its_stream_ends(
    devnull: TextIO, code: str, told: list[int]
) -> None:
    codes: list[int] = []
    streams = _process_streams(
        sys.executable, ["-c", code], {}, ".", devnull, set(), on_exit=codes.append
    )
    async with streams as (read_stream, _):
        with anyio.fail_after(10):
            async for _ in read_stream:  # ends when the process has ended
                pass
            assert codes == told


async def test_a_process_the_session_stops_has_no_exit_code_told(devnull: TextIO) -> None:
    codes: list[int] = []
    waits_for_stdin = ["-c", "import sys; sys.stdin.read()"]
    with anyio.fail_after(10):
        async with _process_streams(
            sys.executable, waits_for_stdin, {}, ".", devnull, set(), on_exit=codes.append
        ):
            pass
    assert codes == []
