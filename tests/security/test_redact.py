"""Secrets from the config never appear in output: the redactor and where it applies."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mcp_agg.config import load_config
from mcp_agg.errors import ConfigError
from mcp_agg.security import redact

SECRET = "tok-3f9a7c1e5b"


def test_redactor_replaces_every_secret_longest_first() -> None:
    hide = redact.Redactor({"abcdef", "abcdefgh", "x"})
    assert hide("a abcdefgh b abcdef c x") == "a *** b *** c x"  # "x" is too short to count
    assert not redact.Redactor(())
    assert redact.Redactor(())("unchanged") == "unchanged"


def test_secrets_of_a_config() -> None:
    raw = {
        "gateway": {
            "auth": {"type": "bearer", "tokens": [{"token": "gw-token-123"}]},
            "admin": {"token": "admin-token-7890abcdef"},
        },
        "servers": [
            {"name": "a", "url": "http://x", "headers": {"Authorization": f"Bearer {SECRET}"}},
            {"name": "b", "command": "x", "env": {"API_KEY": "env-secret-456"}},
        ],
    }
    assert redact.secrets_of(raw) == {
        "gw-token-123",
        "admin-token-7890abcdef",
        f"Bearer {SECRET}",
        SECRET,
        "env-secret-456",
    }


def test_config_errors_do_not_echo_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", SECRET)
    path = tmp_path / "servers.toml"
    path.write_text(
        """
[[servers]]
name = "search"
url = "ftp://search.example/${TOKEN}"
headers = { Authorization = "Bearer ${TOKEN}" }
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "must start with http" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "***" in str(caught.value)


def test_log_filter_masks_messages_and_tracebacks() -> None:
    redact.install({SECRET})
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "header %s", (SECRET,), None)
        assert redact.RedactingFilter().filter(record)
        assert record.getMessage() == "header ***"
        try:
            raise ValueError(SECRET)
        except ValueError as exc:
            failed = logging.LogRecord(
                "x", logging.ERROR, __file__, 1, "failed", None, (ValueError, exc, None)
            )
        redact.RedactingFilter().filter(failed)
        assert SECRET not in failed.getMessage()
        assert failed.exc_info is None
    finally:
        redact.install(())
