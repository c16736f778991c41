"""The merged catalog: every group's tools, resources, templates and prompts, namespaced.

Tool and prompt names get their server's namespace; resource URIs stay as the backends
wrote them, except where two servers list the same one (`mcp_agg.core.uris`).

A catalog is an immutable snapshot, rebuilt whenever a group's listing changes and
swapped in whole, so a request never sees half of an update. Lookups are dict hits:
the catalog is on the path of every call.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import mcp_types
from pydantic import AnyUrl, ValidationError

from mcp_agg.backend.upstream import Listing
from mcp_agg.components.forwarding import (
    ForwardingPrompt,
    ForwardingResource,
    ForwardingTemplate,
    ForwardingTool,
    UnlistedResources,
)
from mcp_agg.core.cache import tool_rule
from mcp_agg.core.naming import Claim, NameRegistry, exposed_name, exposed_uri, namespace
from mcp_agg.core.uris import UriIndex, UriMemory
from mcp_agg.errors import NameCollisionError
from mcp_agg.resilience.group import ReplicaGroup
from mcp_agg.resilience.retry import retry_safe

if TYPE_CHECKING:
    from mcp_agg.components.local import LocalTool

__all__ = ["Catalog", "LocalTools", "build_catalog", "with_local_tools"]

#: Makes some of the gateway's own tools for a catalog of backend tools (a fan-out's
#: targets are looked up in it, for example).
LocalTools = Callable[["Catalog"], Mapping[str, "LocalTool"]]

logger = logging.getLogger(__name__)

_KINDS = ("tool", "prompt", "resource", "resource template")
#: What a collision's message suggests.
_WAYS_OUT = "set a different `prefix` or use `rename_tools` / `exclude_tools` on one of them"


@dataclass(frozen=True)
class Catalog:
    tools: dict[str, ForwardingTool] = field(default_factory=dict)
    resources: dict[str, ForwardingResource] = field(default_factory=dict)
    templates: tuple[ForwardingTemplate, ...] = ()
    prompts: dict[str, ForwardingPrompt] = field(default_factory=dict)
    #: Why components were left out: their exposed name was contested.
    problems: tuple[str, ...] = ()
    #: The gateway's own tools (`mcp_agg.components.local`), by exposed name.
    local: dict[str, LocalTool] = field(default_factory=dict)
    #: Where URIs no listing names are read (`mcp_agg.core.uris`).
    uris: UriIndex = field(default_factory=UriIndex)
    #: What reads them: None while no server is listed.
    unlisted: UnlistedResources | None = None

    def tool(self, name: str) -> ForwardingTool | LocalTool | None:
        """The tool exposed under `name`: a backend's or the gateway's own."""
        return self.tools.get(name) or self.local.get(name)

    def signature(self) -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
        """What clients see, to tell whether a rebuild changed anything worth announcing."""
        return (
            frozenset(
                t.to_mcp_tool().model_dump_json()
                for t in (*self.tools.values(), *self.local.values())
            ),
            frozenset(r.to_mcp_resource().model_dump_json() for r in self.resources.values()),
            frozenset(t.to_mcp_template().model_dump_json() for t in self.templates),
            frozenset(p.to_mcp_prompt().model_dump_json() for p in self.prompts.values()),
        )

    def resource(self, uri: str) -> ForwardingResource | None:
        return self.resources.get(uri)

    def template_for(self, uri: str) -> ForwardingTemplate | None:
        for template in self.templates:
            if template.matches(uri) is not None:
                return template
        return None

    def route_uri(self, uri: str) -> tuple[ReplicaGroup, str] | None:
        """The group that owns an exposed resource URI, and the URI its backend knows:
        a listed resource's, a listed template's, or the server known to have handed it
        out (in a listing's `_meta`, a result, an update). A read tries further
        (`UnlistedResources`)."""
        resource = self.resource(uri)
        if resource is not None:
            return resource.group, resource.original
        template = self.template_for(uri)
        if template is not None:
            return template.group, template.backend_uri(uri)
        owner = self.uris.owner(uri)
        if owner is not None:
            return owner, uri
        return None

    def handed_out(self, group: str, uri: str) -> str:
        """A URI `group` handed out (a resource update), remembered, as clients see it."""
        return self.uris.outgoing(group).uri(uri)

    def route_completion(
        self, ref: Mapping[str, Any]
    ) -> tuple[ReplicaGroup, dict[str, Any]] | None:
        """The group that owns a completion's reference, and the reference in its terms.

        A prompt is named by its exposed name, a resource template by its exposed URI
        template (or a resource by its URI), as the client saw them listed.
        """
        kind = ref.get("type")
        if kind == "ref/prompt":
            prompt = self.prompts.get(str(ref.get("name")))
            if prompt is not None:
                return prompt.group, {**ref, "name": prompt.original}
        elif kind == "ref/resource":
            uri = str(ref.get("uri"))
            for template in self.templates:
                if template.uri_template == uri:
                    return template.group, {**ref, "uri": template.original}
            route = self.route_uri(uri)
            if route is not None:
                return route[0], {**ref, "uri": route[1]}
        return None


def _tool_allowed(group: ReplicaGroup, name: str) -> bool:
    server = group.server
    if server.include_tools is not None and not any(
        fnmatch.fnmatchcase(name, pattern) for pattern in server.include_tools
    ):
        return False
    return not any(fnmatch.fnmatchcase(name, pattern) for pattern in server.exclude_tools)


def _uri_keys(uri: str) -> Iterable[str]:
    """The URI as listed, and as pydantic normalizes it (what FastMCP looks up by)."""
    yield uri
    try:
        normalized = str(AnyUrl(uri))
    except ValidationError:
        return
    if normalized != uri:
        yield normalized


def build_catalog(
    groups: Iterable[ReplicaGroup],
    separator: str,
    *,
    strict: bool,
    memory: UriMemory | None = None,
) -> Catalog:
    """Merge the listings of every visible group, in config order.

    `memory` is what the gateway keeps of URIs across rebuilds (`mcp_agg.core.uris`).

    Components that would get one exposed name are all left out, and the problem is
    kept (`Catalog.problems`): a collision between names the backends chose must not
    stop the other backends. With `strict` (startup), a collision the config made (two
    servers with one prefix, a rename onto a taken name) is an error naming both
    instead, which the operator can fix before starting.
    """
    # Failover groups stand in for another group and are not listed.
    listed = [g for g in groups if g.server.failover_for is None and g.listing is not None]
    merge = _Merge(separator, UriIndex.build(listed, UriMemory() if memory is None else memory))
    for group in listed:
        assert group.listing is not None
        merge.add(group, group.listing)
    return merge.catalog(strict=strict)


class _Merge:
    """The listings merged so far, one name registry per kind of component."""

    def __init__(self, separator: str, uris: UriIndex) -> None:
        self.separator = separator
        self.uris = uris
        self.names = {kind: NameRegistry(kind) for kind in _KINDS}
        self.tools: dict[str, ForwardingTool] = {}
        self.resources: dict[str, ForwardingResource] = {}
        self.templates: dict[str, ForwardingTemplate] = {}
        self.prompts: dict[str, ForwardingPrompt] = {}

    def catalog(self, *, strict: bool) -> Catalog:
        """The merged catalog, every component whose name is contested left out."""
        problems: list[str] = []
        for registry in self.names.values():
            for collision in registry.collisions():
                if strict and collision.by_config:
                    raise NameCollisionError(f"{collision}; {_WAYS_OUT}")
                problems.append(f"{collision}: none of them is exposed; {_WAYS_OUT}")
                self._withhold(collision.kind, collision.exposed)
        return Catalog(
            self.tools,
            self.resources,
            # A colliding server's prefixed templates first: an earlier server's template
            # with a wildcard (`files://{path*}`) would fit their URIs too.
            tuple(sorted(self.templates.values(), key=lambda t: t.original == t.uri_template)),
            self.prompts,
            tuple(problems),
            uris=self.uris,
            unlisted=UnlistedResources(self.uris) if self.uris.groups else None,
        )

    def _withhold(self, kind: str, exposed: str) -> None:
        """Leave out what was built for `exposed` (a resource under each of its keys)."""
        if kind == "tool":
            self.tools.pop(exposed, None)
        elif kind == "prompt":
            self.prompts.pop(exposed, None)
        elif kind == "resource":
            for key in _uri_keys(exposed):
                self.resources.pop(key, None)
        else:
            self.templates.pop(exposed, None)

    def add(self, group: ReplicaGroup, listing: Listing) -> None:
        space = namespace(group.prefix, self.separator)
        uris = self.uris.outgoing(group.name)
        rewrite = uris.rewrite
        self._add_tools(group, listing.tools)
        for prompt in listing.prompts:
            exposed = exposed_name(group.prefix, self.separator, prompt.name)
            if self.names["prompt"].claim(exposed, Claim(group.name, prompt.name, space)):
                self.prompts[exposed] = ForwardingPrompt.create(
                    exposed, _with_meta(prompt, uris.meta(prompt.meta)), group, prompt.name, uris
                )
        for resource in listing.resources:
            original = str(resource.uri)
            exposed = original if rewrite is None else rewrite.exposed(original)
            if self.names["resource"].claim(exposed, Claim(group.name, original, group.prefix)):
                definition = _with_meta(resource, uris.meta(resource.meta))
                forwarding = ForwardingResource.create(exposed, definition, group, original, uris)
                for key in _uri_keys(exposed):
                    self.resources[key] = forwarding
        for template in listing.templates:
            original = template.uri_template
            exposed = original
            if rewrite is not None and original in rewrite.templates:
                exposed = exposed_uri(rewrite.prefix, original)
            claim = Claim(group.name, original, group.prefix)
            if self.names["resource template"].claim(exposed, claim):
                self.templates[exposed] = ForwardingTemplate.create(
                    exposed, _with_meta(template, uris.meta(template.meta)), group, original, uris
                )

    def _add_tools(self, group: ReplicaGroup, tools: Iterable[mcp_types.Tool]) -> None:
        server = group.server
        space = namespace(group.prefix, self.separator)
        uris = self.uris.outgoing(group.name)
        for tool in tools:
            if not _tool_allowed(group, tool.name):
                continue
            renamed = server.rename_tools.get(tool.name)
            exposed = exposed_name(group.prefix, self.separator, renamed or tool.name)
            claim = Claim(group.name, tool.name, space, renamed=renamed is not None)
            if self.names["tool"].claim(exposed, claim):
                safe = retry_safe(
                    tool.name,
                    tool.annotations,
                    idempotent=server.idempotent_tools,
                    non_idempotent=server.non_idempotent_tools,
                )
                self.tools[exposed] = ForwardingTool.create(
                    exposed,
                    _with_meta(tool, uris.meta(tool.meta)),
                    group,
                    tool.name,
                    safe=safe,
                    cache_rule=tool_rule(tool.name, tool.annotations, server.cache),
                    uris=uris,
                )


_M = TypeVar("_M", mcp_types.Tool, mcp_types.Prompt, mcp_types.Resource, mcp_types.ResourceTemplate)


def _with_meta(definition: _M, meta: dict[str, Any] | None) -> _M:
    """The definition with its `_meta` rewritten (`Outgoing.meta`), the same if unchanged."""
    return definition if meta is definition.meta else definition.model_copy(update={"meta": meta})


def with_local_tools(catalog: Catalog, sources: Iterable[LocalTools], *, strict: bool) -> Catalog:
    """The catalog with the gateway's own tools added.

    A local tool whose name a backend tool already has is a collision: an error with
    `strict` (startup), else left out with the problem logged and kept (a refresh).
    """
    local: dict[str, LocalTool] = {}
    problems = list(catalog.problems)
    for source in sources:
        for name, tool in source(catalog).items():
            if name in catalog.tools or name in local:
                owner = catalog.tools[name].server if name in catalog.tools else local[name].server
                message = (
                    f"tool name collision: the gateway's own tool {name!r} ({tool.server}) and "
                    f"{owner!r} tool {name!r}; rename one of them"
                )
                if strict:
                    raise NameCollisionError(message)
                logger.error("%s", message)
                problems.append(message)
                continue
            local[name] = tool
    if not local and len(problems) == len(catalog.problems):
        return catalog
    return replace(catalog, local=local, problems=tuple(problems))
