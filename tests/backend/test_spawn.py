"""The environment a stdio backend is spawned with: the SDK's, repeated without importing it."""

from __future__ import annotations

import pytest
from mcp.client.stdio import get_default_environment

from mcp_agg.backend.spawn import default_environment


@pytest.mark.parametrize(
    "environ",
    [
        {"PATH": "/usr/bin", "HOME": "/home/me", "SECRET_TOKEN": "x"},
        {"PATH": "/bin", "SHELL": "() { :; }", "TERM": "xterm", "USER": "me", "LOGNAME": "me"},
        {},
    ],
    ids=["some", "a shell function", "none"],
)
def test_the_inherited_environment_is_the_sdks(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "SECRET_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert default_environment() == get_default_environment()
