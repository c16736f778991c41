"""ReplicaGroup: the replicas that share one `name`, seen as one backend.

Every proxied request goes through its group:

1. the balancer picks a replica that is connected, healthy and admitted by its breaker,
   and that this call has not tried yet;
2. a failure is classified once (errors.py): it feeds the replica's breaker if it
   counts against the replica, and is retried (retry.py's loop: exponential backoff
   with full jitter, within the attempts, the deadline and the retry budget) only if it
   is safe: nothing ran (nothing was sent, or the backend refused it for a session it
   no longer knows), or the tool is safe to repeat;
3. when every replica has failed the call, the failover groups are tried in priority
   order with the same original name;
4. `request_timeout` bounds all of it; on expiry the backend request is cancelled
   (`notifications/cancelled`) and the caller gets an error naming the timeout.

Every attempt of one logical call carries the same idempotency key in `_meta`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import mcp_types

from mcp_agg.backend.upstream import Listing, Upstream
from mcp_agg.config import RetryConfig, ServerConfig
from mcp_agg.errors import (
    BulkheadFull,
    FailureKind,
    UpstreamError,
    UpstreamRequestError,
    UpstreamTimeout,
    UpstreamUnavailable,
    classify,
    may_have_run,
)
from mcp_agg.observability.audit import note_attempt
from mcp_agg.resilience.balancer import Balancer, RoundRobin
from mcp_agg.resilience.picking import await_replica, nobody_available, pick, unavailable
from mcp_agg.resilience.retry import IDEMPOTENCY_KEY, RetryBudget, retrying
from mcp_agg.security.limits import Bulkhead

if TYPE_CHECKING:
    from mcp_agg.observability.tracing import Tracer

__all__ = ["ReplicaGroup"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Send = Callable[[Upstream, dict[str, Any]], Awaitable[_T]]


class _GroupExhausted(UpstreamError):
    """Every replica this call could use has failed it (or none was free)."""

    def __init__(self, message: str, last: BaseException | None, *, sent: bool) -> None:
        super().__init__(message)
        self.last = last
        #: Whether any attempt may have run on a backend (`errors.may_have_run`).
        self.sent = sent


@dataclass(frozen=True, slots=True)
class _Request(Generic[_T]):
    """One logical call, as each group of the failover chain makes it."""

    what: str
    send: Send[_T]
    #: The call's `_meta`, with its idempotency key: the same on every attempt.
    meta: dict[str, Any]
    safe: bool
    deadline: float
    #: Whether it holds a bulkhead slot (tool calls, reads, prompts).
    limited: bool


@dataclass(slots=True)
class _Tries(Generic[_T]):
    """One group's attempts at a call, and what they have met so far."""

    request: _Request[_T]
    #: Whether the group is the last in the failover chain (it waits for a replica).
    last: bool
    tried: set[str] = field(default_factory=set)
    #: Whether any attempt may have run on a backend (`errors.may_have_run`).
    sent: bool = False
    #: The latest attempt's failure.
    failure: BaseException | None = None


class ReplicaGroup:
    """One backend: one namespace, one or more replicas, and its standbys."""

    def __init__(
        self,
        name: str,
        replicas: list[Upstream],
        *,
        prefix: str,
        timeout: float,
        retry: RetryConfig | None = None,
        balancer: Balancer | None = None,
    ) -> None:
        if not replicas:
            raise ValueError(f"group {name!r} has no replicas")
        self.name = name
        self.replicas = replicas
        self.prefix = prefix
        self.timeout = timeout
        self.retry = retry or RetryConfig()
        self.balancer: Balancer = balancer or RoundRobin()
        self.budget = RetryBudget(
            self.retry.budget_percent, min_per_second=self.retry.budget_min_per_second
        )
        #: Groups tried, in this order, when every replica of this one failed a call.
        self.failovers: list[ReplicaGroup] = []
        #: Attempts beyond a request's first in this group (read by the metrics).
        self.retries = 0
        server = replicas[0].spec.server
        #: `max_concurrent` calls to all replicas together; None is unlimited.
        self.bulkhead = (
            None
            if server.max_concurrent is None
            else Bulkhead(name, server.max_concurrent, server.queue_timeout)
        )
        #: A span per attempt while the gateway traces (observability/tracing.py).
        self.tracer: Tracer | None = None

    @property
    def server(self) -> ServerConfig:
        """The first entry's settings; filters and renames are per group."""
        return self.replicas[0].spec.server

    @property
    def listing(self) -> Listing | None:
        """What the group offers: the listing of its first replica that has connected."""
        for replica in self.replicas:
            if replica.available:
                return replica.listing
        for replica in self.replicas:
            if replica.stats.connects:
                return replica.listing
        return None

    # ------------------------------------------------------------------ requests

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        safe: bool = False,
    ) -> dict[str, Any]:
        """The call's result in its wire form (see `Upstream.call_tool`)."""
        return await self._dispatch(
            f"tool {name!r}",
            lambda replica, m: replica.call_tool(name, arguments, meta=m),
            meta=meta,
            safe=safe,
        )

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        return await self._dispatch(
            f"resource {uri!r}", lambda replica, _: replica.read_resource(uri), safe=True
        )

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None
    ) -> mcp_types.GetPromptResult:
        return await self._dispatch(
            f"prompt {name!r}", lambda replica, _: replica.get_prompt(name, arguments), safe=True
        )

    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        """A completion/complete in wire form; `params.ref` already names the backend's."""
        return await self._dispatch(
            "completion", lambda replica, _: replica.complete(params), safe=True, limited=False
        )

    async def subscribe(self, uri: str) -> None:
        """Subscribe to a backend resource through one replica, which keeps it across
        reconnects and relays its updates."""
        if any(uri in r.subscriptions for r in self.replicas):
            return
        await self._dispatch(
            f"subscription to {uri!r}",
            lambda replica, _: replica.subscribe(uri),
            safe=True,
            limited=False,
        )

    async def unsubscribe(self, uri: str) -> None:
        for replica in self.replicas:
            if uri in replica.subscriptions:
                try:
                    await replica.unsubscribe(uri)
                except Exception as exc:  # a lost session has dropped it anyway
                    logger.info("unsubscribe %r on %s: %s", uri, replica.id, exc)

    async def _dispatch(
        self,
        what: str,
        send: Send[_T],
        *,
        meta: dict[str, Any] | None = None,
        safe: bool,
        limited: bool = True,
    ) -> _T:
        """The whole call: bulkhead slot, failover chain, deadline.

        A `limited` request (a tool call, resource read or prompt) holds one slot of the
        group's bulkhead for all its attempts; a standby holds one of its own while it
        serves the call. A full bulkhead raises `BulkheadFull` (a refusal, so no
        replica's breaker or health ever hears of it).
        """
        meta = {**(meta or {}), IDEMPOTENCY_KEY: uuid.uuid4().hex}
        deadline = anyio.current_time() + self.timeout
        request = _Request(what, send, meta, safe, deadline, limited)
        with anyio.CancelScope(deadline=deadline):
            async with self._slot(limited):
                return await self._chain(request)
        raise self._timed_out(what)  # only the scope's deadline ends it without a return

    async def call_tool_on(
        self,
        replica: Upstream,
        name: str,
        arguments: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
        safe: bool = False,
    ) -> dict[str, Any]:
        """A tools/call on `replica` itself, never balanced to another (a fan-out over
        a group's replicas): one attempt under its breaker, in a slot of the group's
        bulkhead, within `request_timeout`, with an idempotency key. No retry and no
        failover: no other replica would stand for this one."""
        what = f"tool {name!r} on {replica.id}"
        meta = {**(meta or {}), IDEMPOTENCY_KEY: uuid.uuid4().hex}
        with anyio.CancelScope(deadline=anyio.current_time() + self.timeout):
            async with self._slot(True):
                if not replica.available or replica.drained:
                    raise UpstreamUnavailable(f"{what}: {unavailable(replica)}", replica=replica.id)
                note_attempt(replica.id)
                return await self._attempt(
                    replica, lambda r, m: r.call_tool(name, arguments, meta=m), meta, safe=safe
                )
        raise self._timed_out(what)  # only the scope's deadline ends it without a return

    def _timed_out(self, what: str) -> UpstreamTimeout:
        """The error of a call whose `request_timeout` expired; the scope's cancellation
        has cancelled the backend request.

        The deadline is one cancel scope, entered where the call starts: what
        `anyio.fail_after` adds (three generator context managers deep, a TimeoutError
        to translate) cost about a tenth of a call's path through the group (measured in
        docs/performance.md, round three). The scope catches only its own cancellation,
        so a call that leaves it without returning or raising has met its deadline.
        """
        return UpstreamTimeout(
            f"{what}: no answer from {self.name!r} within request_timeout "
            f"({self.timeout:g}s); the backend request was cancelled"
        )

    async def _chain(self, request: _Request[_T]) -> _T:
        """This group, then its failovers in priority order, until one serves the call."""
        last: _GroupExhausted | None = None
        chain = (self, *self.failovers)
        for group in chain:
            try:
                # This group's own slot is already held (`_dispatch`); a standby takes one.
                slot = contextlib.nullcontext() if group is self else group._slot(request.limited)
                async with slot:
                    return await group._call(request, last=group is chain[-1])
            except BulkheadFull as exc:  # a standby with no slot free: on to the next
                logger.warning("%s: %s", request.what, exc)
            except _GroupExhausted as exc:
                last = exc
                if exc.sent and not request.safe:
                    break  # it may have run once: never run it on a standby too
                if group is not self or self.failovers:
                    logger.warning("%s: %s", request.what, exc)
        assert last is not None  # this group is first, and raises or fails the call
        raise _unwrap(last)

    def _slot(self, limited: bool) -> contextlib.AbstractAsyncContextManager[object]:
        """A slot of the group's bulkhead for a limited request; nothing to hold otherwise."""
        if self.bulkhead is None or not limited:
            return contextlib.nullcontext()
        return self.bulkhead.slot()

    async def _call(self, request: _Request[_T], *, last: bool) -> _T:
        """One group's attempts at a call: balancer, breaker, and retries (`retrying`).

        Each attempt prefers a replica this call has not tried. Once all have been
        tried the group has failed the call and the next group in the failover chain
        takes over; the last group in the chain retries its replicas again instead.
        """
        tries = _Tries(request, last)
        try:
            return await retrying(
                functools.partial(self._try, tries),
                self.retry,
                self.budget,
                deadline=request.deadline,
                safe=request.safe,
                final=(_GroupExhausted,),
            )
        except _GroupExhausted:
            raise
        except Exception as exc:
            kind = classify(exc)
            if kind is FailureKind.PROTOCOL:
                raise  # the backend's own answer: relayed as it is
            raise _GroupExhausted(f"{self.name!r}: {exc}", exc, sent=tries.sent) from exc

    async def _try(self, tries: _Tries[_T], number: int) -> _T:
        """Attempt `number` of a call, on a replica it has not tried; the last group in the
        chain waits for a reconnecting one. None left: the group is exhausted."""
        replica = pick(self.replicas, self.balancer, tries.tried)
        if replica is None and tries.last:
            replica = await await_replica(self.replicas, self.balancer, tries.request.deadline)
        if replica is None:
            failure = tries.failure
            raise _GroupExhausted(
                nobody_available(self.name, self.replicas, tries.tried, failure),
                failure,
                sent=tries.sent,
            )
        tries.tried.add(replica.id)
        note_attempt(replica.id)
        if number > 1:
            self.retries += 1
        try:
            request = tries.request
            return await self._attempt(replica, request.send, request.meta, safe=request.safe)
        except Exception as exc:
            tries.failure = exc
            tries.sent = tries.sent or may_have_run(exc)
            raise

    async def _attempt(
        self, replica: Upstream, send: Send[_T], meta: dict[str, Any], *, safe: bool
    ) -> _T:
        """One attempt on `replica` (of `_call`, or `call_tool_on`), in a span of its own
        while the gateway traces."""
        if self.tracer is None:
            return await self._guarded(replica, send, meta, safe=safe)
        with self.tracer.attempt(self.name, replica.id, meta) as traced:
            return await self._guarded(replica, send, traced, safe=safe)

    async def _guarded(
        self, replica: Upstream, send: Send[_T], meta: dict[str, Any], *, safe: bool
    ) -> _T:
        """The attempt under the replica's breaker, within `attempt_timeout` if safe."""
        with replica.breaker.guard(replica.id):
            limit = self.retry.attempt_timeout if safe else None
            if limit is None:
                return await send(replica, meta)
            try:
                with anyio.fail_after(limit):
                    return await send(replica, meta)
            except TimeoutError as exc:
                raise UpstreamTimeout(
                    f"backend {replica.id}: no answer within attempt_timeout ({limit:g}s)",
                    replica=replica.id,
                ) from exc


def _unwrap(exc: _GroupExhausted) -> UpstreamError:
    """The error for the caller: the last real failure when there was one."""
    last = exc.last
    if isinstance(last, UpstreamError):
        return type(last)(str(exc), replica=last.replica)
    if last is not None:
        return UpstreamRequestError(str(exc))
    return UpstreamUnavailable(str(exc))
