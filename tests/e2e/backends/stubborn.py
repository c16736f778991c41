"""A stdio MCP server in plain JSON-RPC (it starts in milliseconds) that can be made to hang
and to refuse to stop, as a hung server or an `npx`/`uvx` launch tree does.

It answers `initialize`, `tools/list` (tools `echo` and `stall`), `ping` and calls to
`echo`; a call to `stall` is never answered. Arguments: `LOG [--silent] [--stubborn]
[--child]`.

- `--silent`: answers nothing at all, not even `initialize` (hung in initialize);
- `--stubborn`: ignores SIGTERM and the end of stdin, so only SIGKILL ends it;
- `--child`: starts itself again (without `--child`) as a child on the same pipes, which
  serves, and waits for it, as a launcher does; both stubborn if asked.

Every process appends `EVENT PID PGID MONOTONIC` lines to LOG: `spawn` when it starts,
`sigterm` and `eof` when it gets them, so a test can tell the replicas' processes apart
(by process group) and see the gateway's escalation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from plain import answer

LOG = Path(sys.argv[1])
OPTIONS = set(sys.argv[2:])


def note(event: str) -> None:
    with LOG.open("a") as log:
        log.write(f"{event} {os.getpid()} {os.getpgid(0)} {time.monotonic()}\n")


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    note("sigterm")
    if "--stubborn" not in OPTIONS:
        sys.exit(0)


def reply(request: dict[str, Any]) -> dict[str, Any] | None:
    params = request.get("params") or {}
    if request.get("method") != "tools/call":
        return answer(request, "stubborn", ["echo", "stall"])
    if params.get("name") == "echo":
        result = {"content": [{"type": "text", "text": f"echo from {os.getpid()}"}]}
        return {"jsonrpc": "2.0", "id": request["id"], "result": result}
    return None  # `stall`: never answered


def serve() -> None:
    for line in sys.stdin:
        message = None if "--silent" in OPTIONS else reply(json.loads(line))
        if message is not None:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()
    note("eof")


def main() -> None:
    signal.signal(signal.SIGTERM, on_sigterm)
    note("spawn")
    if "--child" in OPTIONS:
        served = [arg for arg in sys.argv[1:] if arg != "--child"]
        child = subprocess.Popen([sys.executable, sys.argv[0], *served])
        raise SystemExit(child.wait())
    serve()
    while "--stubborn" in OPTIONS:
        signal.pause()


if __name__ == "__main__":
    main()
