"""Forwarding components: FastMCP tools, resources, templates and prompts that relay to a group.

Each one lists itself exactly as its backend described it, but under its exposed name,
and relays a request to its group under the original name. Results come back verbatim:
the backend's `CallToolResult` (content, structuredContent, `_meta`, `isError`),
`ReadResourceResult` and `GetPromptResult` are handed to the wire as they arrived, not
rebuilt through FastMCP's own result types.

Every call of a catalog tool (`PipelineTool`: a backend's, or one of the gateway's own)
takes the gateway's call pipeline (`mcp_agg.core.pipeline`), whichever way it came in.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import mcp_types
from fastmcp.exceptions import PromptError, ResourceError, ToolError
from fastmcp.prompts.base import Message, Prompt, PromptResult
from fastmcp.resources.base import Resource, ResourceResult
from fastmcp.resources.template import ResourceTemplate
from fastmcp.server.dependencies import get_server
from fastmcp.tools.base import Tool, ToolResult
from mcp.shared.exceptions import MCPError
from pydantic import AnyUrl, BaseModel, ConfigDict, PrivateAttr

from mcp_agg.core.uris import NOT_FOUND_CODES, Outgoing, UriIndex, UriMemory
from mcp_agg.core.views import ServesCalls, ServesReads
from mcp_agg.errors import RefusedError, UpstreamError
from mcp_agg.observability.audit import note_failure
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from mcp_agg.core.cache import CacheRule
    from mcp_agg.resilience.group import ReplicaGroup

__all__ = [
    "CallTarget",
    "Forwarding",
    "ForwardingPrompt",
    "ForwardingResource",
    "ForwardingTemplate",
    "ForwardingTool",
    "PipelineTool",
    "UnlistedResources",
    "hop_wire",
    "relay_result",
]

#: The model config of every component class here and below (`components/local.py`,
#: search, fan-out, the gateway's tools). Pydantic builds a model class's validator and
#: serializer when the class is defined, a millisecond or two for each subclass of
#: FastMCP's components, and most of them are made by some configurations only (a
#: backend without prompts makes no `ForwardingPrompt`, a gateway without `[[fanout]]`
#: no `FanoutTool`). Deferred, the build happens at the first instance instead, and
#: costs the same there: a start pays only for the classes its catalog uses, while its
#: backends compete with it for the CPU (docs/benchmarks.md, "Startup and import time").
DEFERRED = ConfigDict(defer_build=True)

logger = logging.getLogger(__name__)

#: Result `_meta` keys that describe the backend's connection, not the result: the
#: gateway's own connection to the client states its own.
_CONNECTION_META_KEYS = frozenset(
    {
        mcp_types.SERVER_INFO_META_KEY,
        mcp_types.PROTOCOL_VERSION_META_KEY,
        mcp_types.CLIENT_INFO_META_KEY,
        mcp_types.CLIENT_CAPABILITIES_META_KEY,
    }
)


class CallTarget(Protocol):
    """What the call pipeline calls: a backend's tool (`ForwardingTool`) or one of the
    gateway's own (`mcp_agg.components.local.LocalTool`)."""

    @property
    def name(self) -> str: ...

    @property
    def server(self) -> str:
        """The server named in the audit log and metrics."""
        ...

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The call's result in its wire form."""
        ...


_R = TypeVar(
    "_R", mcp_types.CallToolResult, mcp_types.ReadResourceResult, mcp_types.GetPromptResult
)


def relay_result(raw: mcp_types.CallToolResult) -> ToolResult:
    """A ToolResult that hands the backend's result to the wire as it is.

    `ToolResult.from_mcp_result` would first convert every content block into a new
    one, only for `to_mcp_result` to return the raw result anyway.
    """
    result = ToolResult.model_construct(
        content=raw.content,
        structured_content=raw.structured_content,
        meta=raw.meta,
        is_error=raw.is_error,
    )
    result._raw_mcp_result = raw
    return result


_D = TypeVar("_D", mcp_types.Tool, mcp_types.Resource, mcp_types.ResourceTemplate, mcp_types.Prompt)


def _renamed(definition: _D, field: str, value: str) -> _D:
    """The backend's definition as listed, with its name (or URI) set to `value`."""
    if getattr(definition, field) == value:
        return definition
    return definition.model_copy(update={field: value})


def hop_wire(result: dict[str, Any]) -> dict[str, Any]:
    """`_hop` for a result in its wire form, stated in the modern era's terms.

    A handshake-era backend sends no `resultType`; its result is complete by definition,
    which a modern-era client must be told (the server's output check requires it, and
    drops it again for a handshake-era client).
    """
    if "resultType" not in result:
        result = {**result, "resultType": "complete"}
    meta = result.get("_meta")
    if not isinstance(meta, dict) or _CONNECTION_META_KEYS.isdisjoint(meta):
        return result
    kept = {k: v for k, v in meta.items() if k not in _CONNECTION_META_KEYS}
    return {**result, "_meta": kept} if kept else {k: v for k, v in result.items() if k != "_meta"}


def _hop(result: _R) -> _R:
    """The result as it is, less the backend's connection-scoped `_meta` keys."""
    meta = result.meta
    if not meta or _CONNECTION_META_KEYS.isdisjoint(meta):
        return result
    kept = {k: v for k, v in meta.items() if k not in _CONNECTION_META_KEYS}
    return result.model_copy(update={"meta": kept or None})


class Forwarding(BaseModel, Generic[_D]):
    """What every forwarding component keeps: the group it relays to, the name (or URI)
    its backend knows it by, the backend's definition under its exposed name, and what
    handles the URIs its results hand out (`mcp_agg.core.uris`)."""

    model_config = DEFERRED

    _group: ReplicaGroup = PrivateAttr()
    _original: str = PrivateAttr()
    _definition: _D = PrivateAttr()
    _uris: Outgoing = PrivateAttr()

    def _forward(
        self, group: ReplicaGroup, original: str, definition: _D, uris: Outgoing | None
    ) -> None:
        self._group = group
        self._original = original
        self._definition = definition
        self._uris = Outgoing(group.name, UriMemory()) if uris is None else uris

    @property
    def group(self) -> ReplicaGroup:
        return self._group

    @property
    def original(self) -> str:
        return self._original


class PipelineTool(Tool):
    """A tool of the catalog; subclasses implement `server` and `relay`.

    The gateway's server sends a `tools/call` of it down the call pipeline itself.
    FastMCP's own call path (taken while middleware takes part in calls) ends in `run`,
    which hands the call to the same pipeline: either way it is admitted, recorded and
    relayed once, the same way.
    """

    model_config = DEFERRED

    @property
    def server(self) -> str:
        """The server named in the audit log and metrics."""
        raise NotImplementedError

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The call's result in its wire form (a tool error as an `isError` result)."""
        raise NotImplementedError

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        server = get_server()  # the server running this call (FastMCP's context)
        if not isinstance(server, ServesCalls):
            raise ToolError(f"{self.name}: only the gateway's server can call this tool")
        wire = await server.calls.call(self, arguments)
        return relay_result(mcp_types.CallToolResult.model_validate(wire, by_name=False))


class ForwardingTool(Forwarding[mcp_types.Tool], PipelineTool):
    """A backend tool under its exposed name."""

    _safe: bool = PrivateAttr(default=False)
    _cache_rule: CacheRule | None = PrivateAttr(default=None)

    @classmethod
    def create(
        cls,
        exposed: str,
        definition: mcp_types.Tool,
        group: ReplicaGroup,
        original: str,
        *,
        safe: bool = False,
        cache_rule: CacheRule | None = None,
        uris: Outgoing | None = None,
    ) -> ForwardingTool:
        tool = cls(
            name=exposed,
            title=definition.title,
            description=definition.description,
            parameters=definition.input_schema,
            output_schema=definition.output_schema,
            annotations=definition.annotations,
        )
        tool._forward(group, original, definition.model_copy(update={"name": exposed}), uris)
        tool._safe = safe
        tool._cache_rule = cache_rule
        return tool

    @property
    def server(self) -> str:
        return self._group.name

    @property
    def definition(self) -> mcp_types.Tool:
        return self._definition

    @property
    def safe(self) -> bool:
        """Safe to repeat after a failure that may have reached the backend."""
        return self._safe

    @property
    def cache_rule(self) -> CacheRule | None:
        """How its results may be kept (`mcp_agg.core.cache`); None: never."""
        return self._cache_rule

    def to_mcp_tool(self, **overrides: Any) -> mcp_types.Tool:
        # The backend's definition as it was (schemas, annotations, icons, _meta), renamed.
        return _renamed(self._definition, "name", overrides.get("name", self.name))

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The call as a wire result: the backend's JSON, or a tool error when none came."""
        try:
            raw = await self._group.call_tool(self._original, arguments, safe=self._safe)
        except (UpstreamError, RefusedError) as exc:
            # A sign-in link is its caller's alone: the log says one was sent.
            logger.warning("%s: %s", self.name, exc.logged)
            note_failure(exc)  # the audit log tells this error from the tool's own
            text = redact(f"{self.name}: {exc}")
            raw = {"content": [{"type": "text", "text": text}], "isError": True}
        return hop_wire(self._uris.tool_result(raw))


class _RawResourceResult(ResourceResult):
    """A backend's `ReadResourceResult`, relayed as it is.

    `contents` stays empty: decoding blobs into FastMCP content objects only to encode
    them again would cost time on every read.
    """

    model_config = DEFERRED

    _raw: mcp_types.ReadResourceResult = PrivateAttr()
    _backend_uri: str = PrivateAttr()
    _uris: Outgoing = PrivateAttr()

    @classmethod
    def wrap(
        cls, raw: mcp_types.ReadResourceResult, backend_uri: str, uris: Outgoing
    ) -> _RawResourceResult:
        result = cls(contents=[], meta=raw.meta)
        result._raw = raw
        result._backend_uri = backend_uri
        result._uris = uris
        return result

    def to_mcp_result(self, uri: AnyUrl | str) -> mcp_types.ReadResourceResult:
        # Contents that name the backend's URI name the URI the client asked for; any
        # other URI is one the backend hands out.
        contents = []
        for item in self._raw.contents:
            exposed = str(uri) if item.uri == self._backend_uri else self._uris.uri(item.uri)
            if exposed != item.uri:
                item = item.model_copy(update={"uri": exposed})
            contents.append(item)
        return self._raw.model_copy(update={"contents": contents})


def _log_level(exc: UpstreamError | RefusedError) -> int:
    """FastMCP logs a read's or a prompt's error with its message: one that holds
    something for its caller only (a sign-in link) is logged at DEBUG alone."""
    return logging.WARNING if exc.logged == str(exc) else logging.DEBUG


async def _read(
    group: ReplicaGroup, backend_uri: str, exposed: str, uris: Outgoing
) -> ResourceResult:
    server = get_server()
    try:
        if isinstance(server, ServesReads):
            raw = await server.cache.read(
                group.name, backend_uri, lambda: group.read_resource(backend_uri)
            )
        else:
            raw = await group.read_resource(backend_uri)
    except (UpstreamError, RefusedError) as exc:
        raise ResourceError(f"{exposed}: {exc}", log_level=_log_level(exc)) from exc
    return _RawResourceResult.wrap(_hop(raw), backend_uri, uris)


class ForwardingResource(Forwarding[mcp_types.Resource], Resource):
    """A backend resource under its exposed URI."""

    @classmethod
    def create(
        cls,
        exposed: str,
        definition: mcp_types.Resource,
        group: ReplicaGroup,
        original: str,
        uris: Outgoing | None = None,
    ) -> ForwardingResource:
        resource = cls(
            uri=AnyUrl(exposed),
            name=definition.name,
            title=definition.title,
            description=definition.description,
            mime_type=definition.mime_type or "text/plain",
        )
        resource._forward(group, original, definition.model_copy(update={"uri": exposed}), uris)
        return resource

    @property
    def exposed(self) -> str:
        """The URI clients see it listed under (what role patterns match)."""
        return str(self._definition.uri)

    def to_mcp_resource(self, **overrides: Any) -> mcp_types.Resource:
        return _renamed(self._definition, "uri", str(overrides.get("uri", self._definition.uri)))

    async def _read(self) -> ResourceResult:
        return await _read(self._group, self._original, str(self._definition.uri), self._uris)


class ForwardingTemplate(Forwarding[mcp_types.ResourceTemplate], ResourceTemplate):
    """A backend resource template under its exposed URI template."""

    _exposed_head: str = PrivateAttr()
    _original_head: str = PrivateAttr()

    @classmethod
    def create(
        cls,
        exposed: str,
        definition: mcp_types.ResourceTemplate,
        group: ReplicaGroup,
        original: str,
        uris: Outgoing | None = None,
    ) -> ForwardingTemplate:
        template = cls(
            uri_template=exposed,
            name=definition.name,
            title=definition.title,
            description=definition.description,
            mime_type=definition.mime_type or "text/plain",
            parameters={},
        )
        definition = definition.model_copy(update={"uri_template": exposed})
        template._forward(group, original, definition, uris)
        # A colliding template's prefix only inserts a literal before the first
        # variable, so the backend URI is the client's with the literal head swapped back.
        template._exposed_head = exposed.split("{", 1)[0]
        template._original_head = original.split("{", 1)[0]
        return template

    def backend_uri(self, uri: str) -> str:
        if not uri.startswith(self._exposed_head):
            raise ResourceError(f"{uri!r} does not match {self.uri_template!r}")
        return self._original_head + uri[len(self._exposed_head) :]

    def to_mcp_template(self, **overrides: Any) -> mcp_types.ResourceTemplate:
        uri_template = overrides.get("uri_template", self.uri_template)
        return _renamed(self._definition, "uri_template", uri_template)

    async def _read(self, uri: str, params: dict[str, Any]) -> ResourceResult:
        return await _read(self._group, self.backend_uri(uri), uri, self._uris)


class UnlistedResources:
    """Reads of URIs no listed resource or template names (`mcp_agg.core.uris`).

    A URI a server is known to have handed out is read from that server first; then
    each other server that offers resources, in config order, until one does not answer
    "not found". The one that has it is remembered, so the next read goes straight to
    it. The read happens when FastMCP looks the URI up (`find`): if no server has it,
    there is nothing to find, and FastMCP answers as a server without it does.
    """

    def __init__(self, index: UriIndex) -> None:
        self._index = index

    async def find(self, uri: str) -> _UnlistedRead | None:
        """The read of `uri` from the first server that has it; None if none has it.

        A server's answer other than "not found" is the answer; a server that could not
        answer does not hold the others back, but if none has the URI, its failure is
        raised rather than a "not found" that may not be true.
        """
        index = self._index
        owner = index.owner(uri)
        groups = [owner] if owner is not None else []
        groups += [g for g in index.offering if g is not owner]
        failure: UpstreamError | RefusedError | None = None
        for group in groups:
            try:
                raw = await group.read_resource(uri)
            except MCPError as exc:
                if exc.error.code in NOT_FOUND_CODES:
                    continue
                raise
            except (UpstreamError, RefusedError) as exc:
                logger.info("%s: %s", uri, exc)
                failure = failure or exc
                continue
            uris = index.outgoing(group.name)
            uris.memory.note(uri, group.name)
            return _UnlistedRead.of(uri, _RawResourceResult.wrap(_hop(raw), uri, uris))
        if failure is not None:
            raise ResourceError(f"{uri}: {failure}", log_level=logging.WARNING) from failure
        return None


class _UnlistedRead(ResourceTemplate):
    """One read of an unlisted URI, already answered (`UnlistedResources.find`): the
    template FastMCP reads it through."""

    model_config = DEFERRED

    _result: ResourceResult = PrivateAttr()

    @classmethod
    def of(cls, uri: str, result: ResourceResult) -> _UnlistedRead:
        read = cls(uri_template=uri, name=uri, parameters={})
        read._result = result
        return read

    def matches(self, uri: str) -> dict[str, Any] | None:
        return {}

    async def _read(self, uri: str, params: dict[str, Any]) -> ResourceResult:
        return self._result


class _RawPromptResult(PromptResult):
    """A backend's `GetPromptResult`, relayed as it is."""

    model_config = DEFERRED

    _raw: mcp_types.GetPromptResult = PrivateAttr()

    @classmethod
    def wrap(cls, raw: mcp_types.GetPromptResult) -> _RawPromptResult:
        messages = [Message(content=m.content, role=m.role) for m in raw.messages]
        result = cls(messages=messages, description=raw.description, meta=raw.meta)
        result._raw = raw
        return result

    def to_mcp_prompt_result(self) -> mcp_types.GetPromptResult:
        return self._raw


class ForwardingPrompt(Forwarding[mcp_types.Prompt], Prompt):
    """A backend prompt under its exposed name."""

    @classmethod
    def create(
        cls,
        exposed: str,
        definition: mcp_types.Prompt,
        group: ReplicaGroup,
        original: str,
        uris: Outgoing | None = None,
    ) -> ForwardingPrompt:
        prompt = cls(name=exposed, title=definition.title, description=definition.description)
        prompt._forward(group, original, definition.model_copy(update={"name": exposed}), uris)
        return prompt

    def to_mcp_prompt(self, **overrides: Any) -> mcp_types.Prompt:
        return _renamed(self._definition, "name", overrides.get("name", self.name))

    async def _render(self, arguments: dict[str, Any] | None = None) -> PromptResult:
        try:
            raw = await self._group.get_prompt(self._original, arguments)
        except (UpstreamError, RefusedError) as exc:
            raise PromptError(f"{self.name}: {exc}", log_level=_log_level(exc)) from exc
        return _RawPromptResult.wrap(self._uris.prompt_result(_hop(raw)))
