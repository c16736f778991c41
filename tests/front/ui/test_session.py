"""Tests for the console's login cookie and CSRF tokens (`mcp_agg.front.ui.session`)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from mcp_agg.front.ui.session import COOKIE, SESSION_TTL, ConsoleKeys, Visitor
from tests.fakes import FakeClock

TOKEN = "admin-token-0123456789"


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/ui", "headers": raw})


def test_a_session_is_valid_and_does_not_hold_the_token() -> None:
    keys = ConsoleKeys(TOKEN)
    session = keys.new_session()
    assert keys.session_valid(session)
    assert TOKEN not in session
    assert keys.new_session() != session  # each login its own


def test_a_session_expires() -> None:
    clock = FakeClock()
    keys = ConsoleKeys(TOKEN, now=clock)
    session = keys.new_session()
    clock.advance(SESSION_TTL)
    assert keys.session_valid(session)
    clock.advance(1)
    assert not keys.session_valid(session)


def tampered(session: str) -> list[str]:
    issued, nonce, mac = session.split(".")
    return [
        f"{int(issued) + 1}.{nonce}.{mac}",  # a later start, to live longer
        f"{issued}.{nonce}x.{mac}",
        f"{issued}.{nonce}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",
        f"{issued}.{nonce}",
        "",
        "..",
        f"x{issued}.{nonce}.{mac}",
    ]


def test_a_tampered_session_or_one_from_another_token_is_refused() -> None:
    keys = ConsoleKeys(TOKEN)
    session = keys.new_session()
    for forged in tampered(session):
        assert not keys.session_valid(forged), forged
    assert not ConsoleKeys(TOKEN + "x").session_valid(session)


def test_the_csrf_token_belongs_to_its_session() -> None:
    keys = ConsoleKeys(TOKEN)
    one, two = keys.new_session(), keys.new_session()
    assert keys.csrf_valid(one, keys.csrf_for(one))
    assert not keys.csrf_valid(one, keys.csrf_for(two))
    assert not keys.csrf_valid(one, None)
    assert not keys.csrf_valid(one, "")
    assert keys.csrf_for(one) != one
    assert TOKEN not in keys.csrf_for(one)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Authorization": f"Bearer {TOKEN}"}, Visitor(None)),
        ({"Authorization": "Bearer admin-token-0123456788"}, None),
        ({"Authorization": f"Basic {TOKEN}"}, None),
        ({"Cookie": f"{COOKIE}={TOKEN}"}, None),  # the token is not a session
        ({"Cookie": f"{COOKIE}=1.2.3"}, None),
    ],
)
def test_who_is_asking(headers: dict[str, str], expected: Visitor | None) -> None:
    assert ConsoleKeys(TOKEN).visitor(request(headers)) == expected


def test_a_valid_cookie_admits_a_visitor_who_needs_csrf() -> None:
    keys = ConsoleKeys(TOKEN)
    session = keys.new_session()
    visitor = keys.visitor(request({"Cookie": f"{COOKIE}={session}"}))
    assert visitor == Visitor(session)
    assert visitor.by_cookie
    # A wrong bearer token is refused even beside a valid cookie: no fallback.
    both = {"Cookie": f"{COOKIE}={session}", "Authorization": "Bearer wrong"}
    assert keys.visitor(request(both)) is None
