"""Cache hints (`ttlMs`, `cacheScope`) of a list the gateway merges from several backends.

A merged list is as fresh as its stalest part and as private as its most private one:
it carries the smallest `ttlMs` of its parts, and is `private` if any part is. A part
that says nothing (a handshake-era backend) is `ttlMs: 0`, `private`, the SDK's
defaults; a list with no parts at all has nothing a client could keep too long.
"""

from __future__ import annotations

from collections.abc import Iterable

from mcp.server.caching import CacheHint

__all__ = ["NO_HINT", "merge_hints"]

#: What a result without hints means: immediately stale, not to be shared.
NO_HINT = CacheHint()


def merge_hints(parts: Iterable[CacheHint]) -> CacheHint:
    """The hint of a list made of `parts` (see the module docstring)."""
    hints = list(parts)
    if not hints:
        return NO_HINT
    ttl = min(hint.ttl_ms for hint in hints)
    private = any(hint.scope == "private" for hint in hints)
    return CacheHint(ttl_ms=ttl, scope="private" if private else "public")
