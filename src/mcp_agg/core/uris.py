"""Resource URIs through the gateway: where a URI is read, and how a server's are exposed.

Backends hand clients URIs in many places besides their resource lists: a tool's
`_meta.ui.resourceUri` (MCP Apps), `resource_link` and embedded `resource` items of tool
and prompt results, `notifications/resources/updated`. Every one of them must be readable
through the gateway, so URIs are exposed as the backend wrote them and a read is routed
by what the gateway knows (`UriIndex`): a listed resource, then a listed template, then a
URI a backend was seen handing out, then each server that offers resources in turn.

Only where two servers list the same URI (or URI template) does one of them need another
name: the first in config order keeps it, each later one gets its prefix inserted after
the scheme (`naming.exposed_uri`), and every URI field of that later server's output is
rewritten the same way (`UriRewrite`, applied by `Outgoing`), so what it hands out still
reaches it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mcp_types
from fastmcp.resources.template import match_uri_template

from mcp_agg.core.naming import exposed_uri

if TYPE_CHECKING:
    from mcp_agg.backend.listing import Listing
    from mcp_agg.resilience.group import ReplicaGroup

__all__ = [
    "NOT_FOUND_CODES",
    "SEEN_URIS_BOUND",
    "Outgoing",
    "UriIndex",
    "UriMemory",
    "UriRewrite",
    "meta_uris",
]

logger = logging.getLogger(__name__)

#: How many handed-out URIs the gateway remembers (least recently used go first).
SEEN_URIS_BOUND = 4096
#: What a backend answers for a URI it does not have: "resource not found" (-32002, of
#: earlier protocol versions) or invalid params (-32602, the current one).
NOT_FOUND_CODES = frozenset({-32002, mcp_types.INVALID_PARAMS})


class UriMemory:
    """What the gateway remembers of URIs across catalog rebuilds: the URIs backends
    handed out (a bounded LRU map to the server that did), and the collisions already
    logged (each is logged once, not at every rebuild)."""

    def __init__(self, bound: int = SEEN_URIS_BOUND) -> None:
        self.bound = bound
        self._seen: OrderedDict[str, str] = OrderedDict()
        self._logged: set[str] = set()

    def note(self, uri: str, group: str) -> None:
        """`group` handed out `uri` (the latest server to hand it out owns it)."""
        seen = self._seen
        seen[uri] = group
        seen.move_to_end(uri)
        if len(seen) > self.bound:
            seen.popitem(last=False)

    def owner(self, uri: str) -> str | None:
        """The server that last handed out `uri`, if it is still remembered."""
        group = self._seen.get(uri)
        if group is not None:
            self._seen.move_to_end(uri)
        return group

    def warn_once(self, message: str) -> None:
        if message not in self._logged:
            self._logged.add(message)
            logger.warning("%s", message)

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(frozen=True, slots=True)
class UriRewrite:
    """How one server's URIs that collide with an earlier server's are exposed: with
    `prefix` inserted after the scheme. Its other URIs are exposed unchanged."""

    prefix: str
    #: Its listed URIs that an earlier server lists too.
    exact: frozenset[str] = frozenset()
    #: Its listed URI templates that an earlier server lists too, as it lists them.
    templates: tuple[str, ...] = ()

    def exposed(self, uri: str) -> str:
        """`uri` as clients see it: prefixed if it is (or fits) a colliding one."""
        if uri in self.exact or any(match_uri_template(uri, t) is not None for t in self.templates):
            return exposed_uri(self.prefix, uri)
        return uri


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The URIs one server hands out: each is remembered for routing (`UriMemory`) and,
    when the server has colliding URIs, rewritten to the form clients read it by.

    Only content items and `_meta` are walked, and a result is copied only where a URI
    changes: this runs on the call path.
    """

    group: str
    memory: UriMemory
    rewrite: UriRewrite | None = None

    def uri(self, uri: str) -> str:
        """A URI the server handed out, remembered, as clients see it."""
        self.memory.note(uri, self.group)
        return uri if self.rewrite is None else self.rewrite.exposed(uri)

    def content(self, items: list[Any]) -> list[Any]:
        """Content items in wire form (a tool result's `content`): `resource_link` and
        embedded `resource` URIs remembered and, where they collide, rewritten."""
        changed: list[Any] | None = None
        for index, item in enumerate(items):
            new = self._item(item)
            if new is not item:
                if changed is None:
                    changed = list(items)
                changed[index] = new
        return items if changed is None else changed

    def _item(self, item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        kind = item.get("type")
        if kind == "resource_link":
            uri = item.get("uri")
            if isinstance(uri, str):
                exposed = self.uri(uri)
                return item if exposed == uri else {**item, "uri": exposed}
        elif kind == "resource":
            resource = item.get("resource")
            if isinstance(resource, dict) and isinstance(resource.get("uri"), str):
                uri = resource["uri"]
                exposed = self.uri(uri)
                if exposed != uri:
                    return {**item, "resource": {**resource, "uri": exposed}}
        return item

    def tool_result(self, result: dict[str, Any]) -> dict[str, Any]:
        """A `tools/call` result in wire form, its content items' URIs handled."""
        items = result.get("content")
        if not isinstance(items, list):
            return result
        content = self.content(items)
        return result if content is items else {**result, "content": content}

    def prompt_result(self, result: mcp_types.GetPromptResult) -> mcp_types.GetPromptResult:
        """A `prompts/get` result, its messages' resource links and embedded resources
        handled."""
        messages: list[mcp_types.PromptMessage] = []
        changed = False
        for message in result.messages:
            content = message.content
            new: Any = content
            if isinstance(content, mcp_types.ResourceLink):
                exposed = self.uri(content.uri)
                if exposed != content.uri:
                    new = content.model_copy(update={"uri": exposed})
            elif isinstance(content, mcp_types.EmbeddedResource):
                exposed = self.uri(content.resource.uri)
                if exposed != content.resource.uri:
                    resource = content.resource.model_copy(update={"uri": exposed})
                    new = content.model_copy(update={"resource": resource})
            if new is not content:
                changed = True
                message = message.model_copy(update={"content": new})
            messages.append(message)
        return result.model_copy(update={"messages": messages}) if changed else result

    def meta(self, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        """A listing's `_meta` with its URI fields (`meta_uris`) rewritten; the same
        object when nothing changes."""
        if not meta or self.rewrite is None:
            return meta
        return _rewritten_meta(meta, self.rewrite)


def _is_uri_key(key: str) -> bool:
    """Whether a `_meta` key names a URI: `uri`, `resourceUri`, `ui/resourceUri`..."""
    return key.lower().endswith("uri")


def meta_uris(meta: Mapping[str, Any] | None) -> Iterator[str]:
    """The URIs in a `_meta` object: string values of keys that end in `uri` (any case),
    at any depth (`ui.resourceUri`, and the flat `ui/resourceUri` MCP Apps also sets)."""
    if not meta:
        return
    for key, value in meta.items():
        if isinstance(value, str) and _is_uri_key(key):
            yield value
        elif isinstance(value, Mapping):
            yield from meta_uris(value)


def _rewritten_meta(meta: dict[str, Any], rewrite: UriRewrite) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    for key, value in meta.items():
        new: Any = value
        if isinstance(value, str) and _is_uri_key(key):
            new = rewrite.exposed(value)
        elif isinstance(value, dict):
            new = _rewritten_meta(value, rewrite)
        if new is not value and new != value:
            if out is None:
                out = dict(meta)
            out[key] = new
    return meta if out is None else out


def _listed_meta(listing: Listing) -> Iterator[Mapping[str, Any] | None]:
    yield from (tool.meta for tool in listing.tools)
    yield from (prompt.meta for prompt in listing.prompts)
    yield from (resource.meta for resource in listing.resources)
    yield from (template.meta for template in listing.templates)


@dataclass(frozen=True)
class UriIndex:
    """Where a URI no listing names is read: one part of the catalog snapshot.

    Listed resources and templates are the catalog's own (`Catalog.route_uri`); this
    holds the rest of the order: URIs in the listings' `_meta`, URIs handed out since
    (the shared `UriMemory`), and the servers that offer resources, in config order.
    """

    memory: UriMemory = field(default_factory=UriMemory)
    #: Every listed server by name.
    groups: Mapping[str, ReplicaGroup] = field(default_factory=dict)
    #: URIs named in the listings' `_meta` (`ui.resourceUri`...), by the first server.
    linked: Mapping[str, str] = field(default_factory=dict)
    #: The servers that list resources or templates, in config order.
    offering: tuple[ReplicaGroup, ...] = ()
    #: How each server with colliding URIs exposes them.
    rewrites: Mapping[str, UriRewrite] = field(default_factory=dict)

    @classmethod
    def build(cls, groups: Iterable[ReplicaGroup], memory: UriMemory) -> UriIndex:
        """The index of these listed groups (in config order), their collisions found
        and logged once each."""
        listed = [g for g in groups if g.listing is not None]
        exact: dict[str, str] = {}
        templates: dict[str, str] = {}
        linked: dict[str, str] = {}
        colliding: dict[str, tuple[set[str], list[str]]] = {}
        for group in listed:
            listing = group.listing
            assert listing is not None
            for resource in listing.resources:
                uri = str(resource.uri)
                first = exact.setdefault(uri, group.name)
                if first != group.name:
                    colliding.setdefault(group.name, (set(), []))[0].add(uri)
                    _log_collision(memory, "resource URI", uri, first, group)
            for template in listing.templates:
                uri = template.uri_template
                first = templates.setdefault(uri, group.name)
                if first != group.name:
                    colliding.setdefault(group.name, (set(), []))[1].append(uri)
                    _log_collision(memory, "resource template", uri, first, group)
            for meta in _listed_meta(listing):
                for uri in meta_uris(meta):
                    linked.setdefault(uri, group.name)
        rewrites = {
            group.name: UriRewrite(group.prefix or group.name, frozenset(uris), tuple(tpls))
            for group in listed
            if group.name in colliding
            for uris, tpls in [colliding[group.name]]
        }
        return cls(
            memory,
            {g.name: g for g in listed},
            linked,
            tuple(g for g in listed if g.listing and (g.listing.resources or g.listing.templates)),
            rewrites,
        )

    def outgoing(self, group: str) -> Outgoing:
        """What handles the URIs `group` hands out."""
        return Outgoing(group, self.memory, self.rewrites.get(group))

    def owner(self, uri: str) -> ReplicaGroup | None:
        """The server known to have handed out `uri`: in a listing's `_meta`, or since."""
        name = self.linked.get(uri) or self.memory.owner(uri)
        return None if name is None else self.groups.get(name)


def _log_collision(memory: UriMemory, kind: str, uri: str, first: str, group: ReplicaGroup) -> None:
    prefixed = exposed_uri(group.prefix or group.name, uri)
    memory.warn_once(
        f"{kind} collision: {first!r} and {group.name!r} both list {uri!r}; {first!r} keeps "
        f"it, {group.name!r} gets {prefixed!r} instead, and its URIs are rewritten alike"
    )
