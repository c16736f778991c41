"""Tests for `mcp_agg.front.ui.signins`: the servers' sign-in states kept between polls."""

from __future__ import annotations

from pathlib import Path

from mcp.shared.auth import OAuthToken

from mcp_agg.backend.oauth.provider import storage_for
from mcp_agg.config import load_config
from mcp_agg.front.ui.signins import TTL, SignInCache
from tests.fakes import FakeClock


async def test_a_state_is_kept_for_the_ttl_and_read_again_after_or_when_forgotten(
    tmp_path: Path, data_dir: Path
) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(
        """
[[servers]]
name = "remote"
url = "http://127.0.0.1:9/mcp"
auth = { type = "oauth" }

[[servers]]
name = "plain"
command = "python"
"""
    )
    specs = load_config(path).replica_specs()
    clock = FakeClock()
    cache = SignInCache(clock=clock)
    assert (await cache.states(specs))["remote"]["signed_in"] is False
    assert list(await cache.states(specs)) == ["remote"]  # only servers with OAuth
    (remote,) = (spec for spec in specs if spec.group == "remote")
    await storage_for(remote).set_tokens(OAuthToken(access_token="at", expires_in=60))

    clock.advance(TTL - 0.1)
    assert (await cache.states(specs))["remote"]["signed_in"] is False  # kept
    clock.advance(0.1)
    assert (await cache.states(specs))["remote"]["signed_in"] is True  # read again

    await storage_for(remote).forget_tokens()
    assert (await cache.states(specs))["remote"]["signed_in"] is True  # kept
    cache.forget("remote")  # a sign-in (here: a sign-out) from the console completed
    assert (await cache.states(specs))["remote"]["signed_in"] is False
