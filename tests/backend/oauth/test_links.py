"""Sign-in links and states: sealed with token_key, opened by any replica holding it,
refused once expired, altered, sealed with another key, or of the other kind."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from mcp_agg.backend.oauth.links import (
    GATEWAY,
    LINK_SECONDS,
    SignInError,
    SignInLinks,
    State,
    Ticket,
)

KEY = "token-key-0123456789"
TICKET = Ticket("client:alice", "remote", "https://h/mcp")
STATE = State("client:alice", "remote", "https://h/mcp", "verifier", "https://as", "n-1")


def ticket_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["ticket"][0]


def test_a_link_points_at_the_public_url_and_opens_on_another_replica() -> None:
    link = SignInLinks(KEY, "https://gw.example/").link(TICKET)
    assert link.startswith("https://gw.example/oauth/authorize?ticket=")
    assert SignInLinks(KEY, "https://gw.example").open_ticket(ticket_of(link)) == TICKET
    links = SignInLinks(KEY, "https://gw.example")
    assert links.open_state(links.seal_state(STATE)) == STATE
    assert links.callback_url == "https://gw.example/oauth/callback"


@pytest.mark.parametrize(
    ("sealed", "problem"),
    [
        (lambda links: ticket_of(links.link(TICKET))[:-4] + "AAAA", "altered"),
        (lambda _: ticket_of(SignInLinks("another-key-0123", "https://g").link(TICKET)), "altered"),
        (lambda links: links.seal_state(STATE), "altered"),  # a state is not a ticket
        (lambda _: "x" * 5000, "too long"),
        (lambda _: "not base64 é", "altered"),
    ],
)
def test_a_ticket_that_is_not_ours_is_refused(
    sealed: Callable[[SignInLinks], str], problem: str
) -> None:
    links = SignInLinks(KEY, "https://gw.example")
    with pytest.raises(SignInError, match=problem):
        links.open_ticket(sealed(links))


def test_links_and_states_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    links = SignInLinks(KEY, "https://gw.example")
    ticket, state = ticket_of(links.link(TICKET)), links.seal_state(STATE)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + LINK_SECONDS + 5)
    with pytest.raises(SignInError, match="expired"):
        links.open_ticket(ticket)
    with pytest.raises(SignInError, match="expired"):
        links.open_state(state)


def test_a_state_says_whose_sign_in_it_is() -> None:
    links = SignInLinks(KEY, "https://gw.example")
    assert STATE.kind == "user"
    own = dataclasses.replace(STATE, user="", kind=GATEWAY)
    assert links.open_state(links.seal_state(own)).kind == GATEWAY
    forged = dataclasses.replace(STATE, kind="admin")
    with pytest.raises(SignInError, match="not one of this gateway's"):
        links.open_state(links.seal_state(forged))
