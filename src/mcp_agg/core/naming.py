"""Exposed names: namespacing, sanitizing, shortening, and collision detection.

Clients (the Anthropic and OpenAI APIs among them) reject tool names outside
`^[a-zA-Z0-9_-]{1,64}$`, so every exposed tool and prompt name is made to fit.
The gateway keeps a map from exposed name to (group, original name) and never
parses a name back, so any mapping that is deterministic and collision-checked works.

A name that had to change gets a short hash of the original, so two names that differ
only in characters a client refuses (`工具`, `道具`) stay two names. What can still
collide is names the config put in one namespace (two servers with one prefix, a rename
onto a name that is taken) and, rarely, names of two namespaces that join alike
(`a` + `b_c`, `a_b` + `c`): `NameRegistry` finds both kinds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "MAX_NAME_LENGTH",
    "Claim",
    "Collision",
    "NameRegistry",
    "exposed_name",
    "exposed_uri",
    "namespace",
    "sanitize",
]

MAX_NAME_LENGTH = 64
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_LENGTH]


def _fitted(name: str) -> str:
    """`name` if every character is valid; else with them as `_`, and `_` plus a short
    hash of `name`, so distinct names never become one."""
    if name and _INVALID.search(name) is None:
        return name
    return f"{_INVALID.sub('_', name)}_{_digest(name)}"


def _shortened(name: str, original: str) -> str:
    """`name` cut to 64 characters, ending with `_` and a short hash of `original`, so
    two long names that share a beginning still differ."""
    if len(name) <= MAX_NAME_LENGTH:
        return name
    return f"{name[: MAX_NAME_LENGTH - _HASH_LENGTH - 1]}_{_digest(original)}"


def sanitize(name: str) -> str:
    """Map a name into `^[a-zA-Z0-9_-]{1,64}$`: a valid name stays as it is; other
    characters become `_` and a short hash of the name is added; a name over 64
    characters is cut and ends with a short hash of the whole original."""
    return _shortened(_fitted(name), name)


def namespace(prefix: str, separator: str) -> str:
    """What every exposed name of a server starts with: `{prefix}{separator}`, its
    invalid characters as `_`; empty for an empty prefix.

    Not hashed: it is the config's own, the same for every name of the server. Two
    servers whose namespaces are equal share one, and so may collide by the config.
    """
    return _INVALID.sub("_", f"{prefix}{separator}") if prefix else ""


def exposed_name(prefix: str, separator: str, name: str) -> str:
    """The server's namespace and `name` made to fit; an empty prefix exposes the name
    alone."""
    return _shortened(namespace(prefix, separator) + _fitted(name), f"{prefix}{separator}{name}")


def exposed_uri(prefix: str, uri: str) -> str:
    """Insert the prefix after the scheme, as FastMCP's namespace transform does: the
    URI of a server that an earlier server lists too (`mcp_agg.core.uris`).

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
class Claim:
    """One backend component that would be exposed under a name."""

    group: str
    original: str
    #: Its group's namespace (`namespace()`, or the prefix for a URI).
    namespace: str = ""
    #: The name comes from the config's `rename_tools`.
    renamed: bool = False


@dataclass(frozen=True, slots=True)
class Collision:
    """Two or more components that would get one exposed name."""

    kind: str
    exposed: str
    claims: tuple[Claim, ...]

    @property
    def by_config(self) -> bool:
        """Whether the config made it: a rename onto a taken name, or two servers put in
        one namespace. Such a collision can be fixed before starting; one between names
        only the backends chose cannot."""
        if any(claim.renamed for claim in self.claims):
            return True
        groups: dict[str, str] = {}
        for claim in self.claims:
            other = groups.setdefault(claim.namespace, claim.group)
            if other != claim.group:
                return True
        return False

    def __str__(self) -> str:
        owners = [f"{claim.group!r} {self.kind} {claim.original!r}" for claim in self.claims]
        named = f"{', '.join(owners[:-1])} and {owners[-1]}"
        return (
            f"{self.kind} name collision: {named} would "
            f"{'both' if len(owners) == 2 else 'all'} be exposed as {self.exposed!r}"
        )


class NameRegistry:
    """The claims on exposed names for one kind of component, and their collisions.

    Kept per kind (tools, prompts, resources, templates), since MCP keeps those
    namespaces apart.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._claims: dict[str, list[Claim]] = {}

    def claim(self, exposed: str, claim: Claim) -> bool:
        """Record a claim; True when it is the first on `exposed` (or the same again)."""
        claims = self._claims.setdefault(exposed, [])
        if claim not in claims:
            claims.append(claim)
        return claims[0] == claim

    def collisions(self) -> Iterator[Collision]:
        """Every exposed name claimed by more than one component, in claiming order."""
        for exposed, claims in self._claims.items():
            if len(claims) > 1:
                yield Collision(self.kind, exposed, tuple(claims))

    def __contains__(self, exposed: object) -> bool:
        return exposed in self._claims
