"""What is said about a server's gateway sign-in (`mcp-agg login`): signed in or not,
until when, whether it renews itself, where the tokens rest; never a token.

`mcp-agg status --json` and the web console both read it from here, so the two never
disagree about a sign-in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcp_agg.backend.oauth.provider import storage_for
from mcp_agg.errors import GatewayError
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from mcp_agg.config import ReplicaSpec

__all__ = ["sign_in_state", "sign_in_states"]


async def sign_in_state(spec: ReplicaSpec) -> dict[str, Any]:
    """The gateway's sign-in to `spec`'s server (which has `auth`); `error` when the
    stored sign-in cannot be read. A `per_user` server's is the operator's, which its
    listing and health probes use; its users' token sets are not counted (the store
    they rest in cannot list its keys)."""
    storage = storage_for(spec)
    config = spec.server.auth
    where: dict[str, Any] = {
        "stored_in": storage.vault.where,
        "per_user": config is not None and config.per_user,
    }
    try:
        signed = await storage.sign_in()
    except GatewayError as exc:
        return {"signed_in": False, **where, "error": redact(str(exc))}
    expires_at = None if signed.expires_at is None else _iso(signed.expires_at)
    return {
        "signed_in": signed.signed_in,
        "expires_at": expires_at,
        "refreshable": signed.refreshable,
        **where,
    }


async def sign_in_states(specs: Iterable[ReplicaSpec]) -> dict[str, dict[str, Any]]:
    """`sign_in_state` per server with `auth` among `specs` (one per server: its
    replicas share a sign-in)."""
    servers = {spec.group: spec for spec in specs if spec.server.auth is not None}
    return {name: await sign_in_state(spec) for name, spec in servers.items()}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
