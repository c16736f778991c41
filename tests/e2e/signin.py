"""Signing the gateway in to `tests/e2e/backends/protected.py` as a user would: `mcp-agg
login` with its authorization URL followed as a browser would, and where the sign-in
then rests (the `data_dir` fixture's file, encrypted with `TOKEN_KEY`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from mcp_agg.backend.oauth.storage import VaultTokenStorage
from mcp_agg.backend.oauth.vault import FileVault
from tests.conftest import TOKEN_KEY
from tests.e2e.procs import PYTHON

__all__ = ["login", "stored"]


def login(config: Path) -> str:
    """`mcp-agg login remote`, its authorization URL followed as a browser would; its
    stderr once it has ended."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "mcp_agg", "login", "remote", "-c", str(config), "--timeout", "30"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        seen = ""
        for line in proc.stderr:
            seen += line
            if line.strip().startswith("http://"):
                # The authorization server approves at once and redirects to the loopback
                # port `login` listens on, which takes the code.
                httpx.get(line.strip(), follow_redirects=True, timeout=10)
                break
        seen += proc.stderr.read()
        assert proc.wait(timeout=30) == 0, seen
        return seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def stored(data_dir: Path, backend: str) -> VaultTokenStorage:
    return VaultTokenStorage(FileVault(data_dir / "tokens.json", TOKEN_KEY), "remote", backend)
