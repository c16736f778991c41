"""A backend's messages during a call, taken to the client that made the call.

Log messages and sampling, elicitation and roots requests carry nothing on the wire
that names the call they belong to; they go to the client whose calls are in flight on
the replica's session, and to nobody while several clients' calls are (the rule is in
core/caller.py). The relay keeps the callers in flight, and its methods are the SDK
session's callbacks for what the backend sends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import mcp_types
from mcp.shared.exceptions import MCPError

from mcp_agg.core.caller import Caller

__all__ = ["ClientRelay"]

logger = logging.getLogger(__name__)


class ClientRelay:
    """One replica session's relay to the clients whose calls are in flight on it."""

    def __init__(self, replica: str) -> None:
        self.replica = replica
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
        if caller is not None:
            with contextlib.suppress(Exception):  # the client went away: its loss
                await caller.log(params)

    async def request(self, request: mcp_types.ServerRequest, result_type: type[Any]) -> Any:
        """The owner's answer to the backend's `request`, or the error that says why not."""
        what = f"{request.method} from backend {self.replica}"
        caller = self.owner()
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
        try:
            return await caller.request(request, result_type, what)
        except MCPError as exc:
            return exc.error
        except Exception as exc:
            return mcp_types.ErrorData(
                code=mcp_types.INTERNAL_ERROR, message=f"{what}: the client was not asked: {exc}"
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
