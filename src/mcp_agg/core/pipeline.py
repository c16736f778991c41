"""The call pipeline: the one path of every `tools/call`, as a list of stages.

A call is looked up first (`lookup`: access): the tool the current caller may see under
that name. Without one, the call is recorded as a call of an unknown tool (`unknown`)
and answered as FastMCP answers an unknown name. A tool found then goes through the
stages, each wrapping the ones after it:

1. `record`: the call's span (with tracing) and the one record of its outcome, told to
   the audit log and the metrics; first, so that a refusal is recorded too;
2. `admit`: the gateway's admission (the caller's rate limit, the arguments' size); a
   refusal is the call's result. A tool that makes a call of its own through the
   pipeline (search mode's call tool) is not admitted: the call it makes is;
3. `cache`, only while some server has a `cache` table (`mcp_agg.core.cache`): a
   cacheable call answered from the cache, and a result that may be kept, kept;
4. `check_result`: the result's size;
5. `relay`, last: the tool's own call: a backend's tool through its group (breaker,
   retries, failover), or one of the gateway's own tools.

Every tools/call takes it: a client's (the gateway's server, `mcp_agg.front.server`),
one on FastMCP's own path while middleware takes part in calls (`PipelineTool.run`),
and one made through search mode's call tool.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from mcp_agg.observability import audit, tracing

if TYPE_CHECKING:
    from mcp_agg.components.forwarding import CallTarget
    from mcp_agg.core.cache import Caching
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.observability.audit import AuditLog, CallObserver, CallRecord
    from mcp_agg.observability.tracing import Tracer
    from mcp_agg.security.access import Visibility
    from mcp_agg.security.limits import CallLimits

__all__ = ["CallHost", "CallPipeline", "Next", "Stage", "ToolCall"]


class CallHost(Protocol):
    """What the pipeline reads of the gateway on every call: a reload may replace the
    limits and the audit log, and metrics and tracing start after the gateway is made."""

    @property
    def catalog(self) -> Catalog: ...

    @property
    def visibility(self) -> Visibility: ...

    @property
    def limits(self) -> CallLimits: ...

    @property
    def audit(self) -> AuditLog | None: ...

    @property
    def observe_call(self) -> CallObserver | None: ...

    @property
    def tracer(self) -> Tracer | None: ...

    @property
    def cache(self) -> Caching: ...


@dataclass(slots=True)
class ToolCall:
    """One call on its way through the stages."""

    tool: CallTarget
    arguments: dict[str, Any]
    #: The tool's result as `relay` returned it (or the cache kept it); None while it has
    #: not run (refused).
    relayed: dict[str, Any] | None = None
    #: The request's `_meta` (the cache's bypass, `mcp_agg.core.cache.BYPASS_META_KEY`).
    meta: Mapping[str, Any] | None = None


#: The rest of the pipeline, as seen from one stage.
Next = Callable[[ToolCall], Awaitable[dict[str, Any]]]


class Stage(Protocol):
    """One stage: does its part around `call_next(call)`, or answers without it."""

    def __call__(self, call: ToolCall, call_next: Next) -> Awaitable[dict[str, Any]]: ...


class CallPipeline:
    """The stages every call of a catalog tool goes through (module docstring)."""

    def __init__(self, host: CallHost) -> None:
        self._host = host
        self.stages: tuple[Stage, ...] = ()
        self._run: Next = self.relay
        self.assemble()

    def assemble(self) -> None:
        """Bind the stages the host's settings call for (again after a reload changed
        them): the cache's only while some server caches calls, so that it costs
        nothing otherwise."""
        cache = self._host.cache
        #: The stages, outermost first; `relay` comes after the last one.
        self.stages = (
            (self.record, self.admit, self.check_result)
            if not cache.caches_calls
            else (self.record, self.admit, cache, self.check_result)
        )
        self._run = _chain(self.stages, self.relay)

    def lookup(self, name: str) -> CallTarget | None:
        """The tool the current caller may call under `name`; None is "unknown tool"."""
        tool = self._host.catalog.tool(name)
        return tool if tool is not None and self._host.visibility.allows(name) else None

    def unknown(self, name: str, arguments: dict[str, Any] | None) -> None:
        """Record a call of a tool this caller cannot see (no backend saw it)."""
        audit.unknown_tool(self._host.audit, self._host.observe_call, name, arguments)

    async def call(
        self,
        tool: CallTarget,
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One client call of `tool` (with its request's `_meta`), through every stage,
        as a wire result."""
        return await self._run(ToolCall(tool, arguments, meta=meta))

    async def record(self, call: ToolCall, call_next: Next) -> dict[str, Any]:
        host, tool = self._host, call.tool
        with (
            tracing.tool_call(host.tracer, tool) as ended,
            audit.record(
                host.audit,
                tool.name,
                tool.server,
                call.arguments,
                host.observe_call if ended is None else _both(host.observe_call, ended),
            ) as entry,
        ):
            wire = await call_next(call)
            if call.relayed is None:
                return entry.refused(wire)
            return entry.result(wire, call.relayed)  # refused when `wire` replaced it (size)

    async def admit(self, call: ToolCall, call_next: Next) -> dict[str, Any]:
        limits = self._host.limits
        # No await without limits: the call path stays as cheap as it was. A tool that
        # relays calls (search mode's call tool) is admitted as the call it makes.
        if limits.admits and not getattr(call.tool, "relays_calls", False):
            refused = await limits.admit(call.tool.name, call.arguments)
            if refused is not None:
                return refused
        return await call_next(call)

    async def check_result(self, call: ToolCall, call_next: Next) -> dict[str, Any]:
        return self._host.limits.checked(call.tool.name, await call_next(call))

    async def relay(self, call: ToolCall) -> dict[str, Any]:
        call.relayed = await call.tool.relay(call.arguments)
        return call.relayed


def _chain(stages: tuple[Stage, ...], last: Next) -> Next:
    """The stages bound into one callable, once: each stage's `call_next` is the rest."""
    run = last
    for stage in reversed(stages):
        run = functools.partial(stage, call_next=run)
    return run


def _both(first: CallObserver | None, then: CallObserver) -> CallObserver:
    """One observer of a call's record that tells `first` (if any), then `then`."""
    if first is None:
        return then

    def observe(record: CallRecord) -> None:
        first(record)
        then(record)

    return observe
