"""Exposed names: namespacing, sanitizing, shortening, and collision detection.

Clients (the Anthropic and OpenAI APIs among them) reject tool names outside
`^[a-zA-Z0-9_-]{1,64}$`, so every exposed tool and prompt name is made to fit.
The gateway keeps a map from exposed name to (group, original name) and never
parses a name back, so any mapping that is deterministic and collision-checked works.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mcp_agg.errors import NameCollisionError

__all__ = ["MAX_NAME_LENGTH", "NameRegistry", "exposed_name", "exposed_uri", "sanitize"]

MAX_NAME_LENGTH = 64
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)


def sanitize(name: str) -> str:
    """Map a name into `^[a-zA-Z0-9_-]{1,64}$`.

    Invalid characters become `_`; a name over 64 characters is cut and ends
    with `_` plus a short hash of the whole original, so two long names that share
    a beginning still differ.
    """
    clean = _INVALID.sub("_", name) or "_"
    if len(clean) <= MAX_NAME_LENGTH:
        return clean
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    return f"{clean[: MAX_NAME_LENGTH - _HASH_LENGTH - 1]}_{digest}"


def exposed_name(prefix: str, separator: str, name: str) -> str:
    """`{prefix}{separator}{name}`, sanitized; an empty prefix exposes the name as is."""
    return sanitize(f"{prefix}{separator}{name}" if prefix else name)


def exposed_uri(prefix: str, uri: str) -> str:
    """Insert the prefix after the scheme, as FastMCP's namespace transform does.

    `notes://index` becomes `notes://notes/index`; a URI without `scheme://` gets
    `prefix/` in front. Works for URI templates too, since it only adds a literal.
    """
    if not prefix:
        return uri
    match = _URI.match(uri)
    if match is None:
        return f"{prefix}/{uri}"
    scheme, rest = match.groups()
    return f"{scheme}{prefix}/{rest}"


@dataclass(frozen=True, slots=True)
class _Owner:
    group: str
    original: str


class NameRegistry:
    """Claims exposed names for one kind of component and rejects a second owner.

    Kept per kind (tools, prompts, resources, templates), since MCP keeps those
    namespaces apart.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._owners: dict[str, _Owner] = {}

    def claim(self, exposed: str, group: str, original: str) -> None:
        owner = _Owner(group, original)
        existing = self._owners.get(exposed)
        if existing is None:
            self._owners[exposed] = owner
            return
        if existing == owner:
            return
        raise NameCollisionError(
            f"{self.kind} name collision: {existing.group!r} {self.kind} {existing.original!r} "
            f"and {group!r} {self.kind} {original!r} would both be exposed as {exposed!r}; "
            "set a different `prefix` or use `rename_tools` / `exclude_tools` on one of them"
        )

    def __contains__(self, exposed: object) -> bool:
        return exposed in self._owners
