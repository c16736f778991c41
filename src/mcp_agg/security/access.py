"""Per-role access to the catalog: what an authenticated caller may see and use.

`[gateway.roles.NAME]` gives glob patterns (`fnmatch`, case-sensitive; `*` also matches
`/` and `:`) over **exposed** names: tool names, prompt names, resource URIs and resource
template URIs (`notes://notes/note/{title}`), as a client sees them listed.

The rule for a caller with roles R:
- a name is **allowed** when at least one role in R has an `allow` pattern matching it
  and **no** role in R has a `deny` pattern matching it (deny wins, across roles too:
  a role with only `deny` patterns takes names away from a caller's other roles);
- a role named by a token but not defined in `[gateway.roles]` grants nothing (a JWT may
  carry roles meant for other services);
- a caller with no roles is allowed nothing, except when `[gateway.roles]` is empty:
  then roles are not in use and every authenticated caller is allowed everything.

A denied name is hidden: it is left out of every list, and a call, read, prompt,
subscription or completion naming it is answered exactly as for an unknown name.
A resource read through a template is allowed when the template is.

`Visibility` is the one place that answers "may the current caller see this": the
provider's lists and lookups, the call pipeline, subscriptions, completions, fan-outs
and search mode all ask it.

Decisions are cached per set of roles and per name, so a caller pays a dict lookup per
call after the first; without `[gateway.auth]` nothing here runs at all.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from mcp_agg.config import RoleConfig

if TYPE_CHECKING:
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.security.auth import CallerAccess

__all__ = ["ALLOW_ALL", "DENY_ALL", "AccessPolicy", "Grant", "Visibility"]

_T = TypeVar("_T")

#: Distinct names one grant remembers decisions for; past it, decisions are recomputed.
_CACHE_LIMIT = 4096


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    patterns = list(patterns)
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(eq=False)
class Grant:
    """What one set of roles may use: `allows(exposed_name)`."""

    allow: re.Pattern[str] | None
    deny: re.Pattern[str] | None
    #: Every name allowed, none denied (stdio, no auth, or roles not in use).
    everything: bool = False
    _decisions: dict[str, bool] = field(default_factory=dict, repr=False)

    def allows(self, name: str) -> bool:
        if self.everything:
            return True
        decision = self._decisions.get(name)
        if decision is None:
            decision = (
                self.allow is not None
                and self.allow.match(name) is not None
                and (self.deny is None or self.deny.match(name) is None)
            )
            if len(self._decisions) < _CACHE_LIMIT:
                self._decisions[name] = decision
        return decision


ALLOW_ALL = Grant(allow=None, deny=None, everything=True)
DENY_ALL = Grant(allow=None, deny=None)


class AccessPolicy:
    """`[gateway.roles]`, compiled: the grant of any set of roles."""

    def __init__(self, roles: Mapping[str, RoleConfig]) -> None:
        self.roles = dict(roles)
        self._grants: dict[frozenset[str], Grant] = {}

    def grant(self, roles: frozenset[str]) -> Grant:
        """The grant of a caller holding `roles` (see the module docstring for the rule)."""
        grant = self._grants.get(roles)
        if grant is None:
            grant = self._build(roles)
            if len(self._grants) < _CACHE_LIMIT:
                self._grants[roles] = grant
        return grant

    def _build(self, roles: frozenset[str]) -> Grant:
        if not self.roles:
            return ALLOW_ALL
        known = [self.roles[r] for r in sorted(roles) if r in self.roles]
        allow = _compile(p for role in known for p in role.allow)
        if allow is None:
            return DENY_ALL
        return Grant(allow=allow, deny=_compile(p for role in known for p in role.deny))


class Visibility:
    """What the current caller may see of the catalog, by exposed name, URI or ref.

    `access` is the per-role access of an authenticated HTTP front (set when that front
    is built); None (stdio, or no `[gateway.auth]`): everything is visible, and each
    answer costs one `None` check.
    """

    def __init__(self, catalog: Callable[[], Catalog], access: CallerAccess | None = None) -> None:
        self._catalog = catalog
        self.access = access

    def allows(self, name: str) -> bool:
        """Whether the current caller may see an exposed name: a tool, a prompt, a
        resource's URI or a template's URI template."""
        return self.access is None or self.access.grant().allows(name)

    def keep(self, items: Iterable[_T], name: Callable[[_T], str]) -> list[_T]:
        """Those of `items` the current caller may see (`name` gives each one's exposed
        name); the caller's grant is looked up once for the whole list."""
        if self.access is None:
            return list(items)
        grant = self.access.grant()
        return [item for item in items if grant.allows(name(item))]

    def allows_uri(self, uri: str) -> bool:
        """Whether the current caller may see an exposed resource URI: a resource, or
        one of a template it may see; else one a backend handed out, matched as it is
        (`mcp_agg.core.uris`), and an unknown URI is not allowed."""
        if self.access is None:
            return True
        catalog = self._catalog()
        resource = catalog.resource(uri)
        if resource is not None:
            return self.allows(resource.exposed)
        template = catalog.template_for(uri)
        if template is not None:
            return self.allows(template.uri_template)
        return catalog.uris.owner(uri) is not None and self.allows(uri)

    def allows_completion(self, ref: Mapping[str, Any]) -> bool:
        """Whether the current caller may see what a `completion/complete` ref names."""
        if self.access is None:
            return True
        if ref.get("type") == "ref/prompt":
            return self.allows(str(ref.get("name")))
        uri = str(ref.get("uri"))
        if any(t.uri_template == uri for t in self._catalog().templates):
            return self.allows(uri)
        return self.allows_uri(uri)
