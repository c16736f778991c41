"""The gateway's own limits on calls: admission (rate limit, argument size), result size,
and the per-server bulkhead.

Refusals are the gateway's decisions, not a backend's failures: they are raised as
`RefusedError`s, never reach a replica's breaker or health, and reach the client as a
tool error result (see `refusal_result` for why not as a JSON-RPC error).

Sizes are the length in bytes of the value as compact UTF-8 JSON, and are measured only
when a limit is configured: the call path without limits does no extra work.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio

from mcp_agg.codec import dumps
from mcp_agg.config import GatewayConfig
from mcp_agg.errors import BulkheadFull, RateLimited, RefusedError, TooLarge
from mcp_agg.security.auth import caller_id
from mcp_agg.security.ratelimit import RateLimiter

if TYPE_CHECKING:
    from mcp_agg.store.base import Store

__all__ = [
    "RETRY_AFTER_META",
    "Bulkhead",
    "CallLimits",
    "check_size",
    "json_size",
    "refusal_result",
]

logger = logging.getLogger(__name__)

#: Result `_meta` key of a rate-limit refusal: seconds until the call may be retried.
RETRY_AFTER_META = "mcp-agg/retry-after"


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON (no spaces, non-ASCII unescaped)."""
    return len(dumps(value))


def check_size(value: Any, limit: int, what: str, setting: str) -> None:
    """Raise `TooLarge` when `value` as compact JSON is over `limit` bytes."""
    size = json_size(value)
    if size > limit:
        raise TooLarge(f"{what} of {size} bytes is over {setting} ({limit} bytes)")


def refusal_result(tool: str, exc: RefusedError) -> dict[str, Any]:
    """A refusal as the wire result of the call: a tool error (`isError: true`).

    Not a JSON-RPC error, on purpose. A refusal is about this call, not about the
    protocol exchange: the request was well formed and the tool exists. MCP reserves
    JSON-RPC errors for protocol problems (unknown tool, malformed request) and reports
    failures of a call in its result, where an LLM client shows the text to the model,
    which can wait and try again; many clients surface a JSON-RPC error as a failed turn
    or a broken server instead. It is also how the gateway already reports a backend it
    could not reach, so a client handles one shape. JSON-RPC has no standard code for
    "slow down", and HTTP 429 exists on one front only (stdio has no status codes). The
    wait before a retry is in `_meta["mcp-agg/retry-after"]` (seconds) for programs.
    """
    result: dict[str, Any] = {
        "content": [{"type": "text", "text": f"{tool}: {exc}"}],
        "isError": True,
        "resultType": "complete",
    }
    if isinstance(exc, RateLimited):
        result["_meta"] = {RETRY_AFTER_META: exc.retry_after}
    return result


class CallLimits:
    """Admission of a `tools/call` before it is relayed, and its result's size after.

    The call pipeline (`mcp_agg.core.pipeline`) asks `admit` first, when it `admits`
    anything (the rate limit of the caller's identity, then the arguments' size), and
    passes the relayed result through `checked`.
    """

    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        *,
        identity: Callable[[], str] | None = None,
    ) -> None:
        self.rate = None if config.rate_limit is None else RateLimiter(config.rate_limit, store)
        self.max_argument_bytes = config.max_argument_bytes
        self.max_result_bytes = config.max_result_bytes
        self._identity = identity or (lambda: caller_id(config.auth))
        #: Whether `admit` has anything to check: without limits the pipeline skips it.
        self.admits = self.rate is not None or self.max_argument_bytes is not None

    async def admit(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """None when the call may go on, else the refusal to return as its result."""
        try:
            if self.rate is not None:
                await self.rate.check(self._identity(), tool)
            if self.max_argument_bytes is not None:
                check_size(arguments, self.max_argument_bytes, "arguments", "max_argument_bytes")
        except RefusedError as exc:
            logger.info("%s: refused: %s", tool, exc)
            return refusal_result(tool, exc)
        return None

    def checked(self, tool: str, result: dict[str, Any]) -> dict[str, Any]:
        """The result, or a refusal when it is over `max_result_bytes`."""
        if self.max_result_bytes is None:
            return result
        try:
            check_size(result, self.max_result_bytes, "result", "max_result_bytes")
        except TooLarge as exc:
            logger.info("%s: refused: %s", tool, exc)
            return refusal_result(tool, exc)
        return result


class Bulkhead:
    """At most `max_concurrent` calls to one server at once; more wait up to
    `queue_timeout` seconds for a slot (first come, first served), then are refused."""

    def __init__(self, server: str, max_concurrent: int, queue_timeout: float) -> None:
        self.server = server
        self.max_concurrent = max_concurrent
        self.queue_timeout = queue_timeout
        self._slots: anyio.Semaphore | None = None  # made in the event loop that uses it
        #: Calls waiting for a slot right now.
        self.waiting = 0

    @property
    def in_use(self) -> int:
        """Slots taken right now."""
        slots = self._slots
        return 0 if slots is None else self.max_concurrent - slots.value

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration, or raise `BulkheadFull`."""
        if self._slots is None:
            self._slots = anyio.Semaphore(self.max_concurrent)
        slots = self._slots
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            await self._wait(slots)
        try:
            yield
        finally:
            slots.release()

    async def _wait(self, slots: anyio.Semaphore) -> None:
        acquired = False
        self.waiting += 1
        try:
            with anyio.move_on_after(self.queue_timeout):
                await slots.acquire()
                acquired = True
        finally:
            self.waiting -= 1
        if not acquired:
            raise BulkheadFull(
                f"server {self.server!r} is busy: its max_concurrent ({self.max_concurrent}) "
                f"calls stayed in flight for queue_timeout ({self.queue_timeout:g} s); "
                "call refused"
            )
