"""The stdio backends `serve` starts before its imports: who takes them, who stops them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from mcp_agg.backend.early import EarlyStarts
from mcp_agg.config import Config, ReplicaSpec
from mcp_agg.config.validation import config_from_raw

#: A backend that waits for its stdin to close, saying so on stderr first.
WAITS = "import sys; print('up', file=sys.stderr, flush=True); sys.stdin.read()"


def config(tmp_path: Path) -> Config:
    return config_from_raw(
        {
            "servers": [
                {"name": "local", "command": sys.executable, "args": ["-c", WAITS]},
                {"name": "remote", "url": "http://127.0.0.1:9/mcp"},
                {"name": "off", "command": sys.executable, "enabled": False},
            ]
        },
        tmp_path / "servers.toml",
        {},
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_only_stdio_backends_start_each_leading_its_own_group(tmp_path: Path) -> None:
    specs = config(tmp_path).replica_specs()
    async with EarlyStarts.started(specs) as early:
        local, remote = specs
        assert early.take(remote) is None
        started = early.take(local)
        assert started is not None
        assert os.getpgid(started.process.pid) == started.process.pid
        assert early.take(local) is None  # taken once
        with os.fdopen(started.stderr, "rb") as stderr:
            assert stderr.readline() == b"up\n"
        await started.process.aclose()


async def test_a_changed_spec_does_not_take_the_process_and_untaken_ones_are_stopped(
    tmp_path: Path,
) -> None:
    local = config(tmp_path).replica_specs()[0]
    changed = ReplicaSpec(local.group, local.id, local.server, tmp_path / "elsewhere")
    async with EarlyStarts.started([local]) as early:
        assert early.take(changed) is None
        pid = early._waiting[local.id].process.pid
        assert alive(pid)
    with anyio.fail_after(5):
        while alive(pid):
            await anyio.sleep(0.05)
