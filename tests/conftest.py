"""Fixtures every wing's tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The `[gateway] token_key` of tests that keep a sign-in (`${MCP_AGG_TOKEN_KEY}`).
TOKEN_KEY = "e2e-token-key-0123456789"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's data dir of the test and every command it runs, with no OS keyring, so
    sign-ins rest in the gateway's own file (backend/oauth/vault.py), never the host's
    keyring; `MCP_AGG_TOKEN_KEY` set for configs that name it."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("MCP_AGG_TOKEN_KEY", TOKEN_KEY)
    return tmp_path / "data" / "mcp-agg"
