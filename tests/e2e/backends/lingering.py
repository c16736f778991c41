"""A stdio MCP server that is slow to exit on stdin EOF (as a backend with cleanup to do,
or 20 backends ending at once on two cores) and quick on SIGTERM.

It answers `initialize`, `tools/list` (one tool, `wait`) and `ping` itself, in plain
JSON-RPC. It appends `eof` when stdin closes and `sigterm` when it gets SIGTERM to the file
named by its first argument, and stays up for a minute after stdin closes.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from plain import answer

LOG = Path(sys.argv[1])


def note(event: str) -> None:
    with LOG.open("a") as log:
        log.write(f"{event}\n")


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    note("sigterm")
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, on_sigterm)
    for line in sys.stdin:
        reply = answer(json.loads(line), "lingering", ["wait"])
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    note("eof")
    time.sleep(60)


if __name__ == "__main__":
    main()
