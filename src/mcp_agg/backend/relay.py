"""A backend's messages, taken to the client they belong to.

Log messages and sampling, elicitation and roots requests carry nothing on the wire
that names the call they belong to; they go to the client whose calls are in flight on
the session, and to nobody while several clients' calls are (the rule is in
core/caller.py). Outside a call, they go to the session's fixed owner if it has one (the
stdio front's client, or the client of a per-client session: core/peer.py), else to
nobody. On a session the HTTP front's clients share (`RelayRule.guarded`), `roots/list`
is answered with no roots, in a call or not: the backend may keep them and use them for
the next client's call (docs/sessions.md).

The relay keeps the callers in flight, and its methods are the SDK session's callbacks
for what the backend sends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import mcp_types
from mcp.shared.exceptions import MCPError

from mcp_agg.core.caller import Caller
from mcp_agg.core.peer import RelayRule

__all__ = ["ClientRelay"]

logger = logging.getLogger(__name__)


#: Servers whose backend asked a shared HTTP session for client context (warned once).
_warned: set[str] = set()


class ClientRelay:
    """One backend session's relay to its clients: those whose calls are in flight on it,
    and its fixed owner (`rule().peer`), if any."""

    def __init__(
        self,
        replica: str,
        rule: Callable[[], RelayRule] = RelayRule,
        *,
        server: str = "",
        advise: bool = True,
    ) -> None:
        self.replica = replica
        self.server = server or replica
        #: Whether to advise `session = "per_client"` when the backend asks a guarded
        #: session for client context (not when the server already has it: then only
        #: the catalog and health probes use this session).
        self.advise = advise
        #: Read at each message: the stdio front sets its client as owner once it serves.
        self.rule = rule
        #: The client requests whose calls are in flight on this session, oldest first.
        self.callers: list[Caller] = []

    @contextlib.contextmanager
    def serving(self, caller: Caller | None) -> Iterator[None]:
        """While a call made for `caller` (if any) is in flight on the session."""
        if caller is None:
            yield
            return
        self.callers.append(caller)
        try:
            yield
        finally:
            self.callers.remove(caller)

    def owner(self) -> Caller | None:
        """The client request that a log message or server request now belongs to.

        The newest call in flight, provided every call in flight came from the same
        client connection; otherwise nobody (see core/caller.py).
        """
        callers = self.callers
        if not callers:
            return None
        newest = callers[-1]
        connection = newest.connection
        if connection is None and len(callers) > 1:
            return None
        if any(c.connection is not connection for c in callers):
            return None
        return newest

    async def log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        logger.debug(
            "backend %s log [%s] %s: %s", self.replica, params.level, params.logger, params.data
        )
        caller = self.owner()
        peer = self.rule().peer
        with contextlib.suppress(Exception):  # the client went away: its loss
            if caller is not None:
                await caller.log(params)
            elif peer is not None:
                await peer.log(params)

    async def request(self, request: mcp_types.ServerRequest, result_type: type[Any]) -> Any:
        """The owner's answer to the backend's `request`, or the error that says why not."""
        what = f"{request.method} from backend {self.replica}"
        rule = self.rule()
        if rule.guarded:
            self._warn_shared(request.method)
            if isinstance(request, mcp_types.ListRootsRequest):
                return mcp_types.ListRootsResult(roots=[])
        caller = self.owner()
        if caller is None and rule.peer is not None:
            return await self._answer(rule.peer.ask(request, result_type, what), what)
        if caller is None:
            reason = (
                "calls of several clients are in flight on this backend session"
                if self.callers
                else "no client call is in flight on this backend session"
            )
            return mcp_types.ErrorData(
                code=mcp_types.INVALID_REQUEST,
                message=f"{what}: the gateway cannot tell which client to ask: {reason}",
            )
        return await self._answer(caller.request(request, result_type, what), what)

    async def _answer(self, asking: Awaitable[Any], what: str) -> Any:
        """The client's answer, or its error as the backend gets it."""
        try:
            return await asking
        except MCPError as exc:
            return exc.error
        except Exception as exc:
            return mcp_types.ErrorData(
                code=mcp_types.INTERNAL_ERROR, message=f"{what}: the client was not asked: {exc}"
            )

    def _warn_shared(self, method: str) -> None:
        if not self.advise or self.server in _warned:
            return
        _warned.add(self.server)
        logger.warning(
            "backend %s asked for client context (%s) on a session the HTTP front's "
            "clients share: it gets no client's roots, and sampling or elicitation only "
            'within a call; set session = "per_client" on server %r to give each client '
            "a session of its own",
            self.replica,
            method,
            self.server,
        )

    async def sampling(self, context: Any, params: mcp_types.CreateMessageRequestParams) -> Any:
        result_type = (
            mcp_types.CreateMessageResultWithTools
            if params.tools
            else mcp_types.CreateMessageResult
        )
        return await self.request(mcp_types.CreateMessageRequest(params=params), result_type)

    async def elicitation(self, context: Any, params: mcp_types.ElicitRequestParams) -> Any:
        return await self.request(mcp_types.ElicitRequest(params=params), mcp_types.ElicitResult)

    async def roots(self, context: Any) -> Any:
        return await self.request(mcp_types.ListRootsRequest(), mcp_types.ListRootsResult)
