"""The gateway's request-state policy: the SDK's ephemeral one, its codec made at first use."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.server.request_state import AESGCMRequestStateCodec, InvalidRequestState

from mcp_agg.front import requeststate
from mcp_agg.front.requeststate import ephemeral_request_state
from mcp_agg.front.server import build_server
from tests.fakes import make_gateway


def test_the_codec_is_made_at_the_first_seal_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[AESGCMRequestStateCodec] = []

    def counted(keys: list[bytes]) -> AESGCMRequestStateCodec:
        made.append(AESGCMRequestStateCodec(keys))
        return made[-1]

    monkeypatch.setattr(requeststate, "AESGCMRequestStateCodec", counted)
    codec = ephemeral_request_state().codec
    assert made == []  # building the policy derives no key
    token = codec.seal(b"state")
    assert codec.unseal(token) == b"state"
    assert len(made) == 1


def test_each_policy_has_a_key_of_its_own() -> None:
    # As `RequestStateSecurity.ephemeral()`: state sealed by another process is refused.
    token = ephemeral_request_state().codec.seal(b"state")
    with pytest.raises(InvalidRequestState):
        ephemeral_request_state().codec.unseal(token)


def test_the_gateway_server_seals_request_state_under_it(tmp_path: Path) -> None:
    server = build_server(make_gateway(tmp_path, []))
    policy = server._request_state_security
    assert policy is not None
    assert type(policy.codec) is type(ephemeral_request_state().codec)
    assert policy.audience is None  # the server's name, as with FastMCP's default
