"""A team gateway (`per_user = true`): each caller of the HTTP front signs in to the
backend once, through the gateway's sign-in link, and their calls carry their own token.

The gateway runs with two static bearer tokens (alice, bob); the backend is FastMCP's
in-memory authorization server and the MCP server it protects (its `token` tool says
which token a call carried), which grants codes without a person, so following the link
with redirects followed is the whole sign-in. The operator signs in first (`mcp-agg
login`, headless): that sign-in lists the catalog, and no caller's call ever carries it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastmcp import Client
from mcp_types import ElicitResult

from tests.e2e.procs import BACKENDS, backend_process, eventually, free_port, served_gateway
from tests.e2e.signin import login, stored

pytestmark = pytest.mark.e2e

LINK = re.compile(r"http://127\.0\.0\.1:\d+/oauth/authorize\?ticket=[\w=%-]+")


@pytest.fixture
def backend() -> Iterator[str]:
    port = free_port()
    with backend_process(BACKENDS / "protected.py", port=port):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """The gateway's stderr."""
    return tmp_path / "gateway.log"


@pytest.fixture
def gateway(tmp_path: Path, backend: str, data_dir: Path, log: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[gateway]
token_key = "${{MCP_AGG_TOKEN_KEY}}"
public_url = "http://127.0.0.1:{port}"

[gateway.auth]
type = "bearer"
tokens = [
  {{ token = "alice-secret", client_id = "alice" }},
  {{ token = "bob-secret", client_id = "bob" }},
]

[[servers]]
name = "remote"
url = "{backend}"
auth = {{ type = "oauth", per_user = true }}
"""
    )
    login(config)  # the operator's sign-in: the catalog's
    with log.open("wb") as stderr, served_gateway(config, port=port, stderr=stderr) as (url, _):
        yield url


def link_in(text: str) -> str:
    found = LINK.search(text)
    assert found is not None, text
    return found.group(0)


async def get(url: str, *, follow_redirects: bool = False) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url, follow_redirects=follow_redirects)


async def follow(link: str) -> httpx.Response:
    """What a browser does with the link: the authorization server approves at once."""
    return await get(link, follow_redirects=True)


async def token_of(client: Client[Any]) -> tuple[bool, str]:
    result = await client.call_tool("remote_token", {}, raise_on_error=False)
    text = result.content[0].text  # type: ignore[union-attr]
    return result.is_error, text


async def test_each_user_signs_in_once_and_calls_carry_their_own_token(
    gateway: str, data_dir: Path, backend: str, log: Path
) -> None:
    operator = await stored(data_dir, backend).get_tokens()
    assert operator is not None
    async with (
        Client(gateway, auth="alice-secret") as alice,
        Client(gateway, auth="bob-secret") as bob,
    ):
        assert "remote_token" in {t.name for t in await alice.list_tools()}
        ends: dict[str, str] = {}
        for name, client in (("alice", alice), ("bob", bob)):
            failed, text = await token_of(client)
            assert failed, text
            assert "Sign in to remote" in text
            page = await follow(link_in(text))
            assert page.status_code == 200, page.text
            assert "Signed in to remote" in page.text
            failed, ends[name] = await token_of(client)
            assert not failed, ends[name]
        assert ends["alice"] != ends["bob"]
        assert operator.access_token[-8:] not in ends.values()
        # Interleaved calls: each always carries its own user's token.
        for _ in range(3):
            assert await token_of(alice) == (False, ends["alice"])
            assert await token_of(bob) == (False, ends["bob"])
    # Neither the links nor the tokens are in the gateway's log.
    logged = await anyio.Path(log).read_text()
    assert "ticket=" not in logged
    assert "sent a sign-in link" in logged
    assert not any(end in logged for end in ends.values())
    # At rest: sealed, in the SQLite file only its owner reads.
    raw = (data_dir / "user-tokens.sqlite").read_bytes()
    assert b"access_token" not in raw
    with sqlite3.connect(data_dir / "user-tokens.sqlite") as db:
        assert db.execute("SELECT count(*) FROM secrets").fetchone()[0] == 3  # 2 users + client


async def test_a_link_is_single_use_and_tamper_proof(gateway: str) -> None:
    async with Client(gateway, auth="alice-secret") as alice:
        _, text = await token_of(alice)
        link = link_in(text)
    altered = await get(link[:-6] + "AAAAAA")
    assert altered.status_code == 400
    assert "altered" in altered.text
    # The callback's state is single use: replaying the authorization server's
    # redirect to the gateway is refused.
    start = await get(link)
    assert start.status_code == 302
    grant = await get(start.headers["location"])
    assert grant.status_code == 302
    callback = grant.headers["location"]
    assert (await get(callback)).status_code == 200
    replay = await get(callback)
    assert replay.status_code == 400
    assert "already completed" in replay.text


async def test_a_client_with_url_elicitation_is_signed_in_within_the_call(
    gateway: str, backend: str
) -> None:
    asked: list[str] = []
    pages: list[int] = []

    async with anyio.create_task_group() as browser:

        async def sign_in(url: str) -> None:
            # A person takes a moment to sign in: a call that did not wait for the new
            # sign-in (the revoked one still kept) would fail, and be asked again.
            await anyio.sleep(1)
            pages.append((await follow(url)).status_code)

        async def handler(message: str, response_type: Any, params: Any, context: Any) -> Any:
            # Accepted at once; the person signs in afterwards, while the call waits.
            asked.append(message)
            browser.start_soon(sign_in, params.url)
            return ElicitResult(action="accept")

        async with Client(
            gateway, auth="alice-secret", mode="legacy", elicitation_handler=handler
        ) as alice:
            failed, first = await token_of(alice)
            assert not failed, first  # the first call, no retry
            assert asked == ["Sign in to remote"]
            assert await token_of(alice) == (False, first)
            # Revoked: the sign-in kept is forgotten, and the next one is waited for.
            async with httpx.AsyncClient(timeout=10) as http:
                await http.post(backend.removesuffix("/mcp") + "/test/revoke-all")

            async def signed_in_again() -> str | None:
                failed, text = await token_of(alice)
                return None if failed else text

            second = await eventually(signed_in_again, "a call after signing in again")
            assert asked == ["Sign in to remote"] * 2
            assert second != first
    assert pages == [200, 200]


async def test_a_revoked_sign_in_gets_a_new_link(gateway: str, backend: str) -> None:
    async with Client(gateway, auth="alice-secret") as alice:
        _, text = await token_of(alice)
        assert (await follow(link_in(text))).status_code == 200
        failed, before = await token_of(alice)
        assert not failed, before
        async with httpx.AsyncClient(timeout=10) as http:
            revoked = await http.post(backend.removesuffix("/mcp") + "/test/revoke-all")
        assert revoked.status_code == 200

        # The very next call is answered with a new link (not "Connection closed").
        failed, text = await token_of(alice)
        assert failed, text
        assert "Sign in to remote" in text, text
        assert (await follow(link_in(text))).status_code == 200
        failed, after = await token_of(alice)
        assert not failed, after
        assert after != before
