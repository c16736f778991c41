"""A team gateway's fleet: two replicas sharing `token_key`, `session_secret` and a Redis
store behind HAProxy (round robin, no stickiness). A user's sign-in starts on one replica
and ends on the other (the link and its state are sealed, not kept in memory), and their
token set, kept in Redis, is the one every replica's calls carry."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastmcp import Client
from redis.asyncio import Redis

from tests.e2e.fleet import fleet, redis_server
from tests.e2e.procs import BACKENDS, backend_process, free_port
from tests.e2e.signin import login
from tests.e2e.test_fleet_sessions import tool_calls
from tests.e2e.test_peruser_signin import follow, link_in, token_of

pytestmark = pytest.mark.e2e

SECRET = "e2e-fleet-session-secret-0123456789abcdef"


async def test_a_sign_in_on_one_replica_serves_calls_on_both(
    tmp_path: Path, data_dir: Path
) -> None:
    proxy = free_port()
    backend_port = free_port()
    with (
        redis_server() as redis,
        backend_process(BACKENDS / "protected.py", port=backend_port),
    ):
        config = tmp_path / "servers.toml"
        config.write_text(
            f"""
[gateway]
connect_timeout = 60
token_key = "${{MCP_AGG_TOKEN_KEY}}"
session_secret = "{SECRET}"
public_url = "http://127.0.0.1:{proxy}"

[gateway.store]
url = "{redis.url}"

[gateway.auth]
type = "bearer"
tokens = [{{ token = "alice-secret", client_id = "alice" }}]

[[servers]]
name = "remote"
url = "http://127.0.0.1:{backend_port}/mcp"
auth = {{ type = "oauth", per_user = true }}
"""
        )
        login(config)  # the operator's: both replicas list the catalog with it
        with fleet(config, 2, proxy_port=proxy) as running:
            async with Client(running.url, auth="alice-secret", mode="legacy") as alice:
                failed, text = await token_of(alice)
                assert failed, text
                # Round robin: /oauth/authorize on one replica, /oauth/callback (the
                # next request through HAProxy) on the other.
                page = await follow(link_in(text))
                assert page.status_code == 200, page.text
                bearer = {"Authorization": "Bearer alice-secret"}
                async with httpx.AsyncClient(timeout=30, headers=bearer) as http:
                    before = [await tool_calls(http, running.replica_url(i)) for i in (0, 1)]
                    answers = {await token_of(alice) for _ in range(6)}
                    after = [await tool_calls(http, running.replica_url(i)) for i in (0, 1)]
            assert len(answers) == 1, answers
            failed, end = answers.pop()
            assert not failed, end
            assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
        # Kept in Redis for the fleet (sealed), not in a replica's local file.
        assert not (data_dir / "user-tokens.sqlite").exists()
        client = Redis.from_url(redis.url)
        try:
            keys = await client.keys("mcp-agg:secret:*")
            assert len(keys) == 2  # alice's token set, and the server's registration
            values = [await client.get(key) for key in keys]
        finally:
            await client.aclose()
        assert all(b"access_token" not in (value or b"") for value in values)
