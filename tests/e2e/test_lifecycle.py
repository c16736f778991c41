"""Start-up and shutdown of `mcp-agg serve` as a process: signals, EOF, and no leaks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import (
    BACKENDS,
    PYTHON,
    alive,
    demo_servers,
    descendants,
    free_port,
    initialize_params,
    kill_group,
    pids_with_arg,
    probe,
    rpc,
    wait_until,
)

pytestmark = pytest.mark.e2e


def lifecycle_config(folder: Path, clock_port: int) -> Path:
    """stdio, a launcher with a child (as npx/uvx), a launched HTTP backend, a broken one."""
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
{demo_servers(folder, "notes", "wrapped", "clock", clock_port=clock_port)}
[[servers]]
name = "broken"
command = "python"
args = ["-c", "import sys; sys.exit(3)"]
"""
    )
    return config


def start_stdio_gateway(config: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    """A gateway on stdio, initialized by a raw JSON-RPC client; returns it and its tree."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    init = rpc(
        proc.stdin,
        proc.stdout,
        "initialize",
        initialize_params("lifecycle-test"),
        1,
    )
    assert init["serverInfo"]["name"] == "mcp-agg"
    proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    proc.stdin.flush()
    tools = rpc(proc.stdin, proc.stdout, "tools/list", {}, 2)["tools"]
    names = {t["name"] for t in tools}
    assert {"notes_add_note", "wrapped_convert", "clock_echo"} <= names
    return proc, descendants(proc.pid)


def assert_reaped(proc: subprocess.Popen[bytes], tree: set[int]) -> None:
    # notes, sh, sh's python, clock (the broken one is between retries or exited)
    assert len(tree) >= 4, f"expected the backends under the gateway, found {tree}"
    proc.wait(timeout=30)
    wait_until(lambda: not alive(tree), 10, f"backend processes {alive(tree)} to exit")


@pytest.mark.parametrize("how", ["stdin-eof", "SIGTERM", "SIGINT"])
def test_stdio_gateway_shutdown_reaps_every_backend(tmp_path: Path, how: str) -> None:
    proc, tree = start_stdio_gateway(lifecycle_config(tmp_path, free_port()))
    try:
        assert proc.stdin is not None
        if how == "stdin-eof":
            proc.stdin.close()
        else:
            proc.send_signal(getattr(signal, how))
        assert_reaped(proc, tree)
        assert proc.returncode == 0
    finally:
        kill_group(proc)


def test_http_gateway_sigterm_reaps_every_backend(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "mcp_agg",
            "serve",
            "-c",
            str(lifecycle_config(tmp_path, free_port())),
            "--transport",
            "http",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(lambda: probe(port) == 200 or proc.poll() is not None, 60, "the gateway ready")
        assert proc.poll() is None
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert_reaped(proc, tree)
        assert proc.returncode == 0
        assert proc.stdout is not None
        assert proc.stdout.read() == b"", "the gateway wrote to stdout"
    finally:
        kill_group(proc)


def test_gateway_killed_with_sigkill_leaves_no_backend(tmp_path: Path) -> None:
    """A crash cannot run shutdown code: the backends must still go."""
    proc, tree = start_stdio_gateway(lifecycle_config(tmp_path, free_port()))
    try:
        os.kill(proc.pid, signal.SIGKILL)
        assert_reaped(proc, tree)
    finally:
        kill_group(proc)
        for pid in alive(tree):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def starting_with_a_slow_backend(
    tmp_path: Path, marker: str, gateway: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """A stdio gateway whose one backend (`marker` in its arguments) never answers, once
    that backend runs; whatever is left of either is killed afterwards."""
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""{gateway}
[[servers]]
name = "slow"
command = "python"
args = ["-c", "import time; time.sleep(300)", "{marker}"]
"""
    )
    proc = subprocess.Popen(
        [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(lambda: bool(pids_with_arg(marker)), 30, "the slow backend to start")
        yield proc
    finally:
        kill_group(proc)
        for pid in pids_with_arg(marker):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_while_backends_are_still_starting_reaps_them(tmp_path: Path) -> None:
    """A stop during startup must not wait for connect_timeout, nor leave a backend."""
    marker = f"still-starting-{tmp_path.name}"
    gateway = "[gateway]\nconnect_timeout = 120\n"
    with starting_with_a_slow_backend(tmp_path, marker, gateway) as proc:
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)  # far less than connect_timeout
        assert proc.returncode == 0
        wait_until(lambda: not alive(tree) and not pids_with_arg(marker), 10, "the backend to go")


def test_gateway_killed_with_sigkill_while_starting_leaves_no_backend(tmp_path: Path) -> None:
    """A backend started before the gateway's imports (backend/early.py) is guarded from
    the start: killed during startup, the gateway leaves none, even one that never reads
    its stdin (which a gateway's death would close)."""
    marker = f"killed-while-starting-{tmp_path.name}"
    with starting_with_a_slow_backend(tmp_path, marker) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(lambda: not pids_with_arg(marker), 10, "the backend to go")


def test_a_stop_signal_after_stdin_eof_hurries_the_backends(tmp_path: Path) -> None:
    """A client that closed stdin sends SIGTERM when the gateway is slow to exit (the MCP
    SDK's stdio client does after 2 s, then SIGKILL after 2 more): the gateway then ends its
    backends at once instead of giving each its own grace, and exits cleanly."""
    log = tmp_path / "lingering.log"
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[[servers]]
name = "slow"
command = "python"
args = ["{BACKENDS / "lingering.py"}", "{log}"]
"""
    )
    proc = subprocess.Popen(
        [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        rpc(
            proc.stdin,
            proc.stdout,
            "initialize",
            initialize_params("lifecycle-test"),
            1,
        )
        tree = descendants(proc.pid)
        proc.stdin.close()
        # The backend saw its stdin close: the gateway is stopping, and the backend lingers.
        wait_until(lambda: log.exists() and "eof" in log.read_text(), 30, "the backend's EOF")
        proc.send_signal(signal.SIGTERM)
        # Well before the 2 s grace each backend gets on a plain stop: the SIGTERM is
        # passed on at once (the SDK's client would SIGKILL the gateway 2 s after its own).
        proc.wait(timeout=1.8)
        assert proc.returncode == 0
        assert log.read_text().split() == ["eof", "sigterm"]
        wait_until(lambda: not alive(tree), 10, f"backend processes {alive(tree)} to exit")
        assert proc.stderr is not None
        assert b"asked again to stop: terminating every backend now" in proc.stderr.read()
    finally:
        kill_group(proc)
        for pid in alive(descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)
