"""Secrets never leave the gateway: configured secret values are replaced by `***`.

The secrets are the values an operator put in servers.toml to authenticate: every
server's `headers` and `env` values and OAuth `client_secret`, the bearer tokens of
`[gateway.auth]`, and `session_secret` and `token_key`. They are
collected once from the config (`install`), and `redact` is applied at the few points
where text leaves the process: log records (a filter on the stderr handler), config
errors, `status`/`tools` output, error results sent to clients and the audit log.

A value shorter than `MIN_LENGTH` is not treated as a secret: replacing `1` or `UTC`
everywhere would garble every line and protect nothing real.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "RedactingFilter",
    "Redactor",
    "install",
    "redact",
    "secrets_of",
]

MASK = "***"
MIN_LENGTH = 6


class Redactor:
    """Replaces every occurrence of any of its secrets in a string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        found = {s for s in secrets if len(s) >= MIN_LENGTH}
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(found, key=len, reverse=True)
        self.secrets = frozenset(found)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)


def secrets_of(raw: Mapping[str, Any]) -> set[str]:
    """The secret values in a config, as a raw (expanded) servers.toml mapping.

    Works on the raw structure so that it can also redact the errors of a config that
    failed validation. A header value such as `Bearer abc...` counts whole and by its
    last word, which is the token itself.
    """
    found: set[str] = set()

    def add(value: object) -> None:
        if isinstance(value, str):
            found.add(value)
            parts = value.split()
            if len(parts) > 1:
                found.add(parts[-1])

    servers = raw.get("servers")
    for server in servers if isinstance(servers, list) else ():
        if not isinstance(server, Mapping):
            continue
        for key in ("headers", "env"):
            table = server.get(key)
            if isinstance(table, Mapping):
                for value in table.values():
                    add(value)
        server_auth = server.get("auth")
        if isinstance(server_auth, Mapping):
            add(server_auth.get("client_secret"))
    gateway = raw.get("gateway")
    auth = gateway.get("auth") if isinstance(gateway, Mapping) else None
    tokens = auth.get("tokens") if isinstance(auth, Mapping) else None
    for token in tokens if isinstance(tokens, list) else ():
        if isinstance(token, Mapping):
            add(token.get("token"))
    admin = gateway.get("admin") if isinstance(gateway, Mapping) else None
    if isinstance(admin, Mapping):
        add(admin.get("token"))
    if isinstance(gateway, Mapping):
        add(gateway.get("session_secret"))
        add(gateway.get("token_key"))
        store = gateway.get("store")
        url = store.get("url") if isinstance(store, Mapping) else None
        password = urlsplit(url).password if isinstance(url, str) else None
        if password:
            found.add(password)
    return found


_current = Redactor()


def install(secrets: Iterable[str]) -> Redactor:
    """Make these the process's secrets (one config per process); returns the redactor."""
    global _current
    _current = Redactor(secrets)
    return _current


def redact(text: str) -> str:
    """`text` with every installed secret replaced by `***`."""
    return _current(text)


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message (and traceback) with the secrets masked.

    Installed on the stderr handler, so it sees every record that is written out,
    whichever logger it came from.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = _current
        if not redactor:
            return True
        message = record.getMessage()
        cleaned = redactor(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned = redactor(text)
            if cleaned != text:
                record.exc_info, record.exc_text = None, None
                record.msg = f"{record.msg}\n{cleaned}"
        return True
