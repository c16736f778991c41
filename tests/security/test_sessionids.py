"""Tests for sealed session ids (`mcp_agg.security.sessionids`)."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import pytest

from mcp_agg.security.sessionids import MAX_AGE, SessionSealer, Ticket, revocation_key

SECRET = "a-fleet-wide-session-secret-of-32+chars"
NOW = 1_800_000_000

#: The initialize params of fastmcp's Client (2025-11-25, as it sends them).
FASTMCP_CLIENT: dict[str, Any] = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "mcp", "version": "0.1.0"},
}
#: An Inspector-like client: sampling, elicitation, roots, and a longer clientInfo.
INSPECTOR: dict[str, Any] = {
    "protocolVersion": "2025-11-25",
    "capabilities": {
        "sampling": {},
        "elicitation": {"form": {}, "url": {}},
        "roots": {"listChanged": True},
    },
    "clientInfo": {"name": "inspector-client", "title": "MCP Inspector", "version": "0.17.2"},
}
ALICE = ("alice", "https://idp.example.test", "user-1234")


def ticket(params: dict[str, Any] = FASTMCP_CLIENT, owner: Any = None) -> Ticket:
    return Ticket(params, "2025-11-25", owner)


def test_round_trip() -> None:
    sealer = SessionSealer(SECRET)
    opened = SessionSealer(SECRET).open(sealer.seal(ticket(INSPECTOR, ALICE), now=NOW), now=NOW)
    assert opened == Ticket(INSPECTOR, "2025-11-25", ALICE, NOW)


def test_ids_are_visible_ascii_and_never_repeat() -> None:
    sealer = SessionSealer(SECRET)
    first, second = sealer.seal(ticket()), sealer.seal(ticket())
    assert first != second  # a fresh IV each time: equal sessions, different ids
    assert re.fullmatch(r"[\x21-\x7e]+", first)  # what the MCP SDK accepts


def test_the_client_params_are_not_readable_in_the_id() -> None:
    session_id = SessionSealer(SECRET).seal(ticket(INSPECTOR))
    raw = base64.urlsafe_b64decode(session_id)
    assert b"inspector" not in raw.lower()
    assert b"sampling" not in raw


def test_any_altered_byte_is_refused() -> None:
    sealer = SessionSealer(SECRET)
    raw = bytearray(base64.urlsafe_b64decode(sealer.seal(ticket(), now=NOW)))
    for i in range(len(raw)):
        altered = bytearray(raw)
        altered[i] ^= 0x01
        assert sealer.open(base64.urlsafe_b64encode(altered).decode(), now=NOW) is None, i


@pytest.mark.parametrize(
    "session_id",
    [
        uuid.uuid4().hex,  # what a gateway without session_secret hands out
        SessionSealer("another-fleets-secret-also-32-chars-long").seal(ticket()),
        "",
        "not base64 at all!",
        "é" * 40,
    ],
    ids=["uuid", "other secret", "empty", "garbage", "non-ascii"],
)
def test_ids_not_sealed_with_this_secret_are_refused(session_id: str) -> None:
    assert SessionSealer(SECRET).open(session_id) is None


@pytest.mark.parametrize(("age", "opens"), [(MAX_AGE - 1, True), (MAX_AGE + 1, False)])
def test_ids_older_than_the_max_age_are_refused(age: int, opens: bool) -> None:
    sealer = SessionSealer(SECRET)
    session_id = sealer.seal(ticket(), now=NOW)
    assert (sealer.open(session_id, now=NOW + age) is not None) is opens


def test_the_owner_is_sealed_so_another_identity_is_told_apart() -> None:
    """The manager refuses an id whose sealed owner is not the caller (the SDK's own
    rule for sessions it holds); that comparison is only as good as what is sealed."""
    sealer = SessionSealer(SECRET)
    opened = sealer.open(sealer.seal(ticket(owner=ALICE)))
    assert opened is not None
    assert opened.owner == ALICE
    assert opened.owner != ("bob", ALICE[1], ALICE[2])
    anonymous = sealer.open(sealer.seal(ticket()))
    assert anonymous is not None
    assert anonymous.owner is None


@pytest.mark.parametrize(("params", "bound"), [(FASTMCP_CLIENT, 300), (INSPECTOR, 400)])
def test_size_bound(params: dict[str, Any], bound: int) -> None:
    """The header stays short for typical clients (docs/fleet.md gives these lengths)."""
    session_id = SessionSealer(SECRET).seal(ticket(params, ALICE))
    assert len(session_id) <= bound


def test_a_revocation_key_is_a_digest_not_the_id() -> None:
    session_id = SessionSealer(SECRET).seal(ticket())
    key = revocation_key(session_id)
    assert session_id not in key
    assert key == revocation_key(session_id)
    assert key != revocation_key(SessionSealer(SECRET).seal(ticket()))
