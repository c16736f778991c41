"""A caller's sign-in to a `per_user` server within the call that needed it.

A handshake-era client that declared URL-mode elicitation (`elicitation: {url: {}}`,
2025-11-25) is sent `elicitation/create` with the sign-in link on the call's own
channel; once it accepts, the call waits, within its own deadline, until the user's
token set appears (whichever replica's callback stored it: the storage is read, every
`_POLL` seconds), tells the client `notifications/elicitation/complete`, and goes on.
Any other caller, and one who declines, cancels or runs out of time, is answered with
`SignInRequired`: a tool error (an MCP error for a read or a prompt) holding the link.

A 2026-07-28 client gets the link as a tool error too: its calls take input through the
bridge's input-required round (core/bridge.py), where the client answers the
elicitation, and the call is only resumed by its retry; the sign-in is not known to be
done when that retry comes, so the link in the error is as good, and simpler.
"""

from __future__ import annotations

import math
import secrets

import anyio
import mcp_types
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.oauth.team import SignInRequired, UserNotSignedIn
from mcp_agg.core.caller import Caller, current_caller

__all__ = ["sign_in_within_call"]

#: How often the user's storage is read while the call waits for the sign-in.
_POLL = 0.25
#: What the call keeps of its deadline after the wait, for the call itself.
_MARGIN = 2.0


def _takes_url_elicitation(caller: Caller) -> bool:
    if not caller.handshake:
        return False
    elicitation = (caller.capabilities or {}).get("elicitation")
    return isinstance(elicitation, dict) and "url" in elicitation


async def sign_in_within_call(missing: UserNotSignedIn) -> None:
    """Have the caller sign in to `missing.server` and wait for it; `SignInRequired`
    when that cannot be done within the call."""
    server, link = missing.server, missing.link
    # What is kept can no longer be used (none, or no longer refreshable): forgotten, so
    # that the wait below ends with the new sign-in, and the next call does not try it.
    await missing.storage.clear()
    caller = current_caller.get()
    if caller is None or not _takes_url_elicitation(caller):
        raise SignInRequired(server, link)
    elicitation_id = secrets.token_urlsafe(16)
    request = mcp_types.ElicitRequest(
        params=mcp_types.ElicitRequestURLParams(
            message=f"Sign in to {server}", url=link, elicitation_id=elicitation_id
        )
    )
    try:
        answer = await caller.request(request, mcp_types.ElicitResult, f"sign-in to {server}")
    except MCPError:
        raise SignInRequired(server, link, " (the client could not show the link)") from None
    if answer.action != "accept":
        what = "declined" if answer.action == "decline" else "cancelled"
        raise SignInRequired(server, link, f" (the sign-in was {what})")
    left = anyio.current_effective_deadline() - anyio.current_time() - _MARGIN
    with anyio.move_on_after(left if math.isfinite(left) else 300):
        # Another replica's callback may store it: nothing here to wait on but the storage.
        while await missing.storage.get_tokens() is None:  # noqa: ASYNC110
            await anyio.sleep(_POLL)
        await caller.context.session.send_notification(
            mcp_types.ElicitCompleteNotification(
                params=mcp_types.ElicitCompleteNotificationParams(elicitation_id=elicitation_id)
            ),
            related_request_id=caller.context.request_id,
        )
        return
    raise SignInRequired(server, link, " (no sign-in within the call's deadline)")
