"""Search mode: for large catalogs, `tools/list` shows a search tool and a call tool.

Clients refuse long tool lists (VS Code stops at 128 tools per request). In search mode
the gateway lists two tools of its own instead of the catalog: `gateway_search_tools`
finds tools by words of their names and descriptions (ranked, with their schemas) and
`gateway_call_tool` calls one by name. The mode is on with `[gateway] tool_mode =
"search"`, or while the catalog has more than `max_listed_tools` tools (then the switch,
each way, is logged as a warning). A client that knows a tool's exposed name may still
call it directly: only the listing changes.

Why not FastMCP's search transforms (`fastmcp.server.transforms.search`)? They fit a
server whose catalog is fixed, not this gateway's:
- a transform is on or off for the server's life; the mode here follows the catalog
  as backends come and go (a catalog that grows past the limit switches, and clients
  are told through the usual `tools/list_changed`, since the catalog's signature moves);
- their index is keyed by a hash of the caller's visible catalog, recomputed on every
  query: callers with different roles rebuild it in turn. Here the index is built once
  per catalog over every tool, and each caller's roles filter the ranked names;
- their call tool runs `ctx.fastmcp.call_tool`, and lives outside the catalog, so the
  gateway's direct call path would not know it (it would audit it as an unknown tool)
  and its unknown-tool answer differs from a direct call's. Here both tools are
  `LocalTool`s of the catalog: the call tool runs through the call pipeline twice, once
  as itself and once as the tool it names (that tool's audit line, rate-limit bucket
  and size limits), and answers a name the caller may not see exactly as a direct
  call of that name is answered;
- they take no `limit`.

The ranking is BM25 (Okapi) over words of each tool's name (weighted up), title,
description and parameters; words are case-folded, split at `_`, `-` and camelCase,
and lightly stemmed (plural `s`), and a query word of 3+ letters also matches longer
words it begins (at half weight).
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import mcp_types
from fastmcp.tools.base import Tool
from pydantic import PrivateAttr

from mcp_agg.components.forwarding import ForwardingTool, hop_wire
from mcp_agg.components.local import LocalTool, error_result
from mcp_agg.config import GatewayConfig
from mcp_agg.core.catalog import Catalog, with_local_tools
from mcp_agg.security.access import AccessPolicy

if TYPE_CHECKING:
    from mcp_agg.core.views import CallPath
    from mcp_agg.security.access import Visibility

__all__ = [
    "CALL_TOOL",
    "SEARCH_TOOL",
    "SearchIndex",
    "SearchMode",
    "listed_instead",
    "unknown_tool_result",
    "words",
]

logger = logging.getLogger(__name__)

SEARCH_TOOL = "gateway_search_tools"
CALL_TOOL = "gateway_call_tool"
DEFAULT_LIMIT = 10
MAX_LIMIT = 50

#: How much a word counts in each part of a tool's text.
_NAME_WEIGHT = 3.0
_TEXT_WEIGHT = 1.0
#: A query word that begins a longer word counts this much of a whole-word match.
_PREFIX_WEIGHT = 0.5
_MIN_PREFIX = 3
#: BM25 parameters (the usual ones).
_K1 = 1.2
_B = 0.75

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The searchable words of `text`: case-folded, split at `_`, `-` and camelCase,
    plural `s` removed; single letters dropped."""
    text = _CAMEL.sub(" ", unicodedata.normalize("NFKC", text))
    return [_stem(w) for w in _WORD.findall(text.casefold()) if len(w) > 1 or w.isdigit()]


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def unknown_tool_result(name: str) -> dict[str, Any]:
    """The answer to a call of a tool the caller cannot see: FastMCP's own answer to a
    direct `tools/call` of an unknown name, word for word."""
    return error_result(f"Unknown tool: {name!r}")


def _described(tool: Tool) -> dict[str, Any]:
    """A search match as a client needs it to call the tool: name, title, description,
    inputSchema and annotations, as `tools/list` would show them."""
    listed = tool.to_mcp_tool().model_dump(by_alias=True, mode="json", exclude_none=True)
    return {
        key: listed[key]
        for key in ("name", "title", "description", "inputSchema", "annotations")
        if key in listed
    }


def _fields(tool: Tool) -> Iterable[tuple[str, float]]:
    """The texts of a tool that are searched, each with its weight."""
    yield tool.name, _NAME_WEIGHT
    if isinstance(tool, ForwardingTool) and tool.original != tool.name:
        yield tool.original, _NAME_WEIGHT
    if tool.title:
        yield tool.title, _NAME_WEIGHT
    if tool.description:
        yield tool.description, _TEXT_WEIGHT
    properties = (tool.parameters or {}).get("properties")
    if isinstance(properties, dict):
        for name, schema in properties.items():
            yield str(name), _TEXT_WEIGHT
            if isinstance(schema, dict) and isinstance(schema.get("description"), str):
                yield schema["description"], _TEXT_WEIGHT


class SearchIndex:
    """A BM25 index over the tools of one catalog, built once.

    Ranking works on every tool; what a caller may see is filtered afterwards, so one
    index serves callers of every role.
    """

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._names: list[str] = []
        self._tools: dict[str, Tool] = {}
        #: Matches as returned, made when first returned.
        self._described: dict[str, dict[str, Any]] = {}
        #: word -> [(tool number, weighted count)]
        self._postings: dict[str, list[tuple[int, float]]] = {}
        lengths: list[float] = []
        for number, tool in enumerate(tools):
            self._names.append(tool.name)
            self._tools[tool.name] = tool
            counts: dict[str, float] = {}
            for text, weight in _fields(tool):
                for word in words(text):
                    counts[word] = counts.get(word, 0.0) + weight
            for word, count in counts.items():
                self._postings.setdefault(word, []).append((number, count))
            lengths.append(sum(counts.values()))
        self._lengths = lengths
        self._average = sum(lengths) / len(lengths) if lengths else 0.0
        self._vocabulary = sorted(self._postings)
        self._by_lower_name = {name.casefold(): name for name in self._names}

    def __len__(self) -> int:
        return len(self._names)

    def described(self, name: str) -> dict[str, Any]:
        """A tool as a search returns it (`name` is one of the indexed tools)."""
        found = self._described.get(name)
        if found is None:
            found = self._described[name] = _described(self._tools[name])
        return found

    def ranked(self, query: str) -> list[str]:
        """Names of the tools matching `query`, best first (ties by name).

        A query that names a tool exactly ranks it first; a query without words
        matches every tool, by name.
        """
        terms = words(query)
        if not terms:
            return sorted(self._names)
        scores: dict[int, float] = {}
        for term in dict.fromkeys(terms):
            for word, weight in self._expand(term):
                postings = self._postings[word]
                idf = math.log(
                    1.0 + (len(self._names) - len(postings) + 0.5) / (len(postings) + 0.5)
                )
                for number, count in postings:
                    norm = _K1 * (1.0 - _B + _B * self._lengths[number] / self._average)
                    score = weight * idf * count * (_K1 + 1.0) / (count + norm)
                    scores[number] = scores.get(number, 0.0) + score
        ranked = [
            self._names[n] for n in sorted(scores, key=lambda n: (-scores[n], self._names[n]))
        ]
        exact = self._by_lower_name.get(query.strip().casefold())
        if exact is not None:
            ranked = [exact, *(name for name in ranked if name != exact)]
        return ranked

    def _expand(self, term: str) -> Iterable[tuple[str, float]]:
        """The indexed words a query word matches: itself, and words it begins."""
        if term in self._postings:
            yield term, 1.0
        if len(term) < _MIN_PREFIX:
            return
        start = bisect.bisect_right(self._vocabulary, term)
        for word in self._vocabulary[start:]:
            if not word.startswith(term):
                break
            yield word, _PREFIX_WEIGHT


class _ModeTool(LocalTool):
    """One of the two tools search mode lists instead of the catalog."""


class _SearchTool(_ModeTool):
    _visibility: Visibility = PrivateAttr()
    _index: SearchIndex = PrivateAttr()

    @classmethod
    def create(cls, visibility: Visibility, index: SearchIndex) -> _SearchTool:
        tool = cls(
            name=SEARCH_TOOL,
            title="Search tools",
            description=(
                "Find the tools of this gateway by words of their names and descriptions. "
                "Returns the best matches first, each with its name, description and "
                f"inputSchema; call one with {CALL_TOOL}. An empty query lists tools by name."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "Words describing the tool wanted, e.g. 'convert units'.",
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                        "description": "Most matches to return.",
                    },
                },
                "required": ["query"],
            },
            output_schema={
                "type": "object",
                "properties": {
                    "tools": {"type": "array", "items": {"type": "object"}},
                    "matches": {
                        "type": "integer",
                        "description": "Tools that matched, including those past the limit.",
                    },
                },
                "required": ["tools", "matches"],
            },
            annotations=mcp_types.ToolAnnotations(
                read_only_hint=True, idempotent_hint=True, open_world_hint=False
            ),
        )
        tool._visibility = visibility
        tool._index = index
        return tool

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        query = arguments.get("query", "")
        limit = arguments.get("limit", DEFAULT_LIMIT)
        if not isinstance(query, str):
            return error_result(f"{SEARCH_TOOL}: 'query' must be a string")
        if not isinstance(limit, int) or isinstance(limit, bool):
            return error_result(f"{SEARCH_TOOL}: 'limit' must be an integer")
        limit = max(1, min(limit, MAX_LIMIT))
        visible = [n for n in self._index.ranked(query) if self._visibility.allows(n)]
        found = {
            "tools": [self._index.described(n) for n in visible[:limit]],
            "matches": len(visible),
        }
        return hop_wire(
            {
                "content": [{"type": "text", "text": json.dumps(found, ensure_ascii=False)}],
                "structuredContent": found,
            }
        )


class _CallTool(_ModeTool):
    #: The call it makes goes through the call pipeline and its limits: not charged twice.
    relays_calls = True

    _calls: CallPath = PrivateAttr()

    @classmethod
    def create(cls, calls: CallPath) -> _CallTool:
        tool = cls(
            name=CALL_TOOL,
            title="Call a tool",
            description=(
                f"Call a tool of this gateway by its name (as {SEARCH_TOOL} returns it), "
                "with its arguments (an object matching its inputSchema)."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The tool's name."},
                    "arguments": {
                        "type": "object",
                        "description": "The tool's arguments.",
                        "default": {},
                    },
                },
                "required": ["name"],
            },
        )
        tool._calls = calls
        return tool

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        name = arguments.get("name")
        forwarded = arguments.get("arguments") or {}
        if not isinstance(name, str):
            return error_result(f"{CALL_TOOL}: 'name' must be a string naming a tool")
        if not isinstance(forwarded, dict):
            return error_result(f"{CALL_TOOL}: 'arguments' must be an object")
        target = None if name == CALL_TOOL else self._calls.lookup(name)
        if target is None:  # recorded (audit, metrics) as the direct path records one
            self._calls.unknown(name, forwarded)
            return hop_wire(unknown_tool_result(name))
        return await self._calls.call(target, forwarded)


def listed_instead(catalog: Catalog) -> list[LocalTool]:
    """In search mode, the tools `tools/list` shows instead of the catalog's; else []."""
    found = (catalog.local.get(SEARCH_TOOL), catalog.local.get(CALL_TOOL))
    return [t for t in found if isinstance(t, _ModeTool)]


class SearchMode:
    """Puts the search tools in every catalog that needs them (`apply`), with an index
    built for that catalog."""

    def __init__(
        self, calls: CallPath, visibility: Visibility, settings: Callable[[], GatewayConfig]
    ) -> None:
        self._calls = calls
        self._visibility = visibility
        #: The running `[gateway]` settings, read at each build (a reload may change them).
        self._current = settings
        #: Whether the last catalog was over `max_listed_tools` (to log the switch once).
        self._over = False
        self._roles_checked = False

    def apply(self, catalog: Catalog, *, strict: bool) -> Catalog:
        """`catalog`, with the search tools when it is in search mode.

        The mode is decided on the whole catalog (every tool it would list), not on
        each caller's share of it: one mode for every client.
        """
        settings = self._current()
        count = len(catalog.tools) + len(catalog.local)
        limit = settings.max_listed_tools
        over = limit > 0 and count > limit
        if over != self._over and settings.tool_mode == "list":
            if over:
                logger.warning(
                    "%d tools are more than max_listed_tools (%d): tools/list now shows "
                    "%s and %s instead of every tool (search mode)",
                    count,
                    limit,
                    SEARCH_TOOL,
                    CALL_TOOL,
                )
            else:
                logger.warning("%d tools: tools/list shows every tool again", count)
        self._over = over
        if not over and settings.tool_mode != "search":
            return catalog
        index = SearchIndex([*catalog.tools.values(), *catalog.local.values()])
        mode_tools = {
            SEARCH_TOOL: _SearchTool.create(self._visibility, index),
            CALL_TOOL: _CallTool.create(self._calls),
        }
        self._check_roles(settings)
        # Added after (and checked for collisions against) every other tool, which is
        # why the source hands back the catalog's local tools as well as its own.
        return with_local_tools(catalog, [lambda c: {**c.local, **mode_tools}], strict=strict)

    def _check_roles(self, settings: GatewayConfig) -> None:
        """Warn (once) when no role may see a search tool: role-holding callers would
        see an empty tool list."""
        roles = settings.roles
        if self._roles_checked or settings.auth is None or not roles:
            return
        self._roles_checked = True
        policy = AccessPolicy(roles)
        for name in (SEARCH_TOOL, CALL_TOOL):
            if not any(policy.grant(frozenset({role})).allows(name) for role in roles):
                logger.warning(
                    "search mode: no role in [gateway.roles] allows %s, so callers with "
                    "roles cannot see it; allow it (e.g. 'gateway_*') where wanted",
                    name,
                )
