"""The era a backend session asks for: `protocol`, and whose session it is."""

from __future__ import annotations

import pytest
from fastmcp.client.messages import MessageHandler

from mcp_agg.backend.opener import SessionOpener
from mcp_agg.backend.process import OutputCapture
from mcp_agg.backend.relay import ClientRelay
from tests.fakes import upstreams


@pytest.mark.parametrize(
    ("protocol", "for_handshake_clients", "mode"),
    [
        ("auto", False, "auto"),  # the newest era the backend speaks
        ("auto", True, "legacy"),  # the replica's handshake-era session
        ("legacy", False, "legacy"),
        ("legacy", True, "legacy"),
        # A pin is kept: opening fails on a handshake-only backend, and says why.
        ("modern", False, "auto"),
        ("modern", True, "auto"),
    ],
)
def test_the_era_asked_for(protocol: str, for_handshake_clients: bool, mode: str) -> None:
    (replica,) = upstreams("svc", protocol=protocol)
    opener = SessionOpener(
        replica.spec,
        1.0,
        ClientRelay(replica.id),
        MessageHandler(),
        OutputCapture(replica.id),
        legacy=for_handshake_clients,
    )
    assert opener._mode() == mode
