"""Which parts of a client's config are credentials in clear.

Claude Desktop, Cursor and Claude Code files commonly hold API keys and tokens as they
are. An imported servers.toml must not: each credential becomes a `${NAME}` reference and
the value stays in the JSON file (or goes into the environment). What counts, by the name
a value goes by (an env or header name, a command-line flag, a URL query parameter):
names whose last word is a token, key, secret, password, authorization, credential or
cookie (`GITHUB_TOKEN`, `X-API-Key`, `PGPASSWORD`; not `MAX_TOKENS` or `TOKEN_FILE`), and
whatever the name, the credential of a `Bearer` or `Basic` value and the password in a
URL. A value that already is a reference (`${...}`) is not a credential in clear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from mcp_agg.config.mcpservers.needs import words

__all__ = ["Span", "in_arg", "in_url", "in_value", "looks_secret"]

#: The last word of a name that holds a secret; a longer word ending so counts too
#: (PGPASSWORD, APIKEY).
_ENDINGS = (
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "authorization",
    "credential",
    "cookie",
)
#: Short last words that count only whole (a `PAT`, not `COMPAT`).
_WHOLE = frozenset({"pat", "pass", "pwd"})
_SCHEME = re.compile(r"(?i)(?:bearer|basic)\s+(?=\S+\s*$)")
_HEADER = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_-]*):\s*(?P<value>\S.*)", re.DOTALL)
_ASSIGN = re.compile(r"-{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>.+)", re.DOTALL)


@dataclass(frozen=True)
class Span:
    """A credential in clear at `text[start:end]`, going by `key` (which names its variable)."""

    start: int
    end: int
    key: str


def looks_secret(name: str) -> bool:
    found = words(name)
    if not found:
        return False
    last = found[-1].lower()
    return last in _WHOLE or last.endswith(_ENDINGS)


def in_value(key: str, value: str) -> list[Span]:
    """The credential in an env or header value named `key`."""
    scheme = _SCHEME.match(value)
    if scheme is not None:
        return _kept(value, scheme.end(), len(value), key)
    if looks_secret(key):
        return _kept(value, 0, len(value), key)
    return in_url(value)


def in_arg(previous: str | None, arg: str) -> list[Span]:
    """The credentials in one command-line argument: `--api-key=VALUE`, the VALUE after
    `--token`, `Authorization: Bearer VALUE` (as `mcp-remote --header` takes it), a URL."""
    if "://" in arg:
        return in_url(arg)
    if previous is not None and previous.startswith("-") and not arg.startswith("-"):
        flag = previous.lstrip("-")
        if "=" not in flag and looks_secret(flag):
            return _kept(arg, 0, len(arg), flag)
    for pattern in (_ASSIGN, _HEADER):
        match = pattern.fullmatch(arg)
        if match is not None and looks_secret(match["name"]):
            start = match.start("value")
            found = in_value(match["name"], match["value"])
            return [Span(start + s.start, start + s.end, s.key) for s in found]
    return []


def in_url(value: str) -> list[Span]:
    """The password of a URL's user info, and its query parameters that look secret."""
    scheme = value.find("://")
    if scheme < 1:
        return []
    start = scheme + 3
    ends = [i for i in (value.find(c, start) for c in "/?#") if i != -1]
    authority_end = min(ends, default=len(value))
    user_info = value[start:authority_end].rpartition("@")[0]
    spans: list[Span] = []
    if ":" in user_info:
        spans += _kept(value, start + user_info.index(":") + 1, start + len(user_info), "password")
    fragment = value.find("#", authority_end)
    end = len(value) if fragment == -1 else fragment
    query = value.find("?", authority_end, end)
    if query != -1:
        for piece in re.finditer(r"[^&]+", value[query + 1 : end]):
            name, equals, _ = piece.group().partition("=")
            if equals and looks_secret(unquote(name)):
                first = query + 1 + piece.start() + len(name) + 1
                spans += _kept(value, first, query + 1 + piece.end(), unquote(name))
    return spans


def _kept(value: str, start: int, end: int, key: str) -> list[Span]:
    """The span, unless it is empty or already a reference."""
    secret = value[start:end]
    if not secret.strip() or "${" in secret:
        return []
    return [Span(start, end, key)]
