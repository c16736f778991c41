"""DNS-rebinding protection for the HTTP front: `Host` and `Origin` validation.

The rules (`HostOriginPolicy.for_bind` builds them from `[gateway]` and the bind address):

- **Host.** With `allowed_hosts` configured, the `Host` header must match one of them.
  Without it, a gateway bound to a loopback address accepts only loopback names
  (`127.0.0.1:*`, `localhost:*`, `[::1]:*`, and the bound address itself), and a gateway
  bound to any other address (`0.0.0.0`, a LAN address) accepts any `Host`: the operator
  chose to be reachable under names the gateway cannot know, and lists them in
  `allowed_hosts` to be checked.
- **Origin.** A request without `Origin` (every non-browser client) passes. A request
  with one, whatever the bind address, passes only when it matches `allowed_origins`,
  or, when that is not configured, a loopback origin (`http://localhost:*`,
  `http://127.0.0.1:*`, `http://[::1]:*` and their https variants). The gateway serves no
  web pages, so no origin is same-site by nature: a browser page on any other origin is
  cross-site and is refused, even on a public bind where `Host` is not checked (a
  browser always sends `Origin` on the cross-origin requests DNS rebinding relies on).
- A refused request gets HTTP 403 with a short JSON-RPC error body naming the header, and
  never reaches the MCP session manager (no session is created, nothing is parsed).

Patterns, as in the MCP SDK's `TransportSecuritySettings`: an exact value, or one ending in
`:*`, which matches any port (or none). Matching ignores case.

Why not the SDK's or FastMCP's guard:
- `mcp.server.transport_security.TransportSecurityMiddleware` answers a bad `Host` with 421,
  not 403, has no notion of "loopback bind only", and FastMCP's `http_app` hard-codes it
  off (`enable_dns_rebinding_protection=False`) in the session manager it builds.
- FastMCP's `HostOriginGuardMiddleware` (`http_app(host_origin_protection=...)`) also
  answers a bad `Host` with 421, always adds its loopback names and the bound address to a
  configured host list (so configured lists cannot replace the defaults), matches host
  names without their port, and lets any loopback origin through a "same-origin fallback"
  even when `allowed_origins` is configured.
So this policy and a small ASGI middleware (`security/originguard.py`) do it, and
`serving.serve_http` turns FastMCP's guard off. The config imports this module to check
its patterns before `serve` starts its backends: it imports no web framework.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.datastructures import Headers

__all__ = [
    "DEFAULT_LOOPBACK_HOSTS",
    "DEFAULT_LOOPBACK_ORIGINS",
    "HostOriginPolicy",
    "check_host_list",
    "check_host_pattern",
    "check_origin_pattern",
    "is_loopback",
]

logger = logging.getLogger(__name__)

DEFAULT_LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1:*", "localhost:*", "[::1]:*")
DEFAULT_LOOPBACK_ORIGINS: tuple[str, ...] = tuple(
    f"{scheme}://{host}" for scheme in ("http", "https") for host in DEFAULT_LOOPBACK_HOSTS
)

_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
_PORT = r"(?::(?:\*|[0-9]{1,5}))?"
_HOST_PATTERN = re.compile(rf"{_HOST}{_PORT}")
_ORIGIN_PATTERN = re.compile(rf"[A-Za-z][A-Za-z0-9+.-]*://{_HOST}{_PORT}")


def _check_port(pattern: str) -> None:
    port = pattern.rsplit(":", 1)[-1] if not pattern.endswith("]") else ""
    if port.isdigit() and not 0 < int(port) < 65536:
        raise ValueError(f"port out of range in {pattern!r}")


def check_host_pattern(pattern: str) -> str:
    """Validate an `allowed_hosts` entry: `name`, `name:port` or `name:*` (any port)."""
    if _HOST_PATTERN.fullmatch(pattern) is None:
        hint = ""
        if "://" in pattern:
            hint = " (a Host has no scheme: write 'example.com:*')"
        elif pattern.count(":") > 1 and not pattern.startswith("["):
            hint = " (write IPv6 addresses in brackets: '[::1]:*')"
        elif "*" in pattern:
            hint = " ('*' may only stand for the whole port: 'example.com:*')"
        raise ValueError(f"not a host pattern: {pattern!r}{hint}")
    _check_port(pattern)
    return pattern


def check_host_list(hosts: list[str]) -> list[str]:
    """An empty `allowed_hosts` would refuse every request: surely a mistake."""
    if not hosts:
        raise ValueError(
            "lists no host, so every request would be refused (leave it out for the default)"
        )
    return hosts


def check_origin_pattern(pattern: str) -> str:
    """Validate an `allowed_origins` entry: `scheme://name`, `...:port` or `...:*`."""
    if _ORIGIN_PATTERN.fullmatch(pattern) is None:
        hint = ""
        if "://" not in pattern:
            hint = " (an origin has a scheme: 'https://example.com')"
        elif pattern.split("://", 1)[1].count("/") or pattern.endswith("/"):
            hint = " (an origin has no path, not even '/': 'https://example.com')"
        elif "*" in pattern:
            hint = " ('*' may only stand for the whole port: 'https://example.com:*')"
        raise ValueError(f"not an origin pattern: {pattern!r}{hint}")
    _check_port(pattern)
    return pattern


def is_loopback(host: str) -> bool:
    """Whether a bind address (or host name) is loopback: `localhost`, 127.0.0.0/8, `::1`."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _matches(value: str, patterns: Iterable[str]) -> bool:
    value = value.strip().lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern.endswith(":*"):
            base = pattern[:-2]
            if value == base or (value.startswith(base + ":") and value[len(base) + 1 :].isdigit()):
                return True
        elif value == pattern:
            return True
    return False


@dataclass(frozen=True, slots=True)
class HostOriginPolicy:
    """What the guard accepts. `allowed_hosts = None` accepts any Host."""

    allowed_hosts: tuple[str, ...] | None
    allowed_origins: tuple[str, ...]

    @classmethod
    def for_bind(
        cls,
        bind_host: str,
        allowed_hosts: Sequence[str] | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> HostOriginPolicy:
        """The policy for a gateway bound to `bind_host` (see the module docstring)."""
        hosts: tuple[str, ...] | None
        if allowed_hosts is not None:
            hosts = tuple(allowed_hosts)
        elif is_loopback(bind_host):
            hosts = DEFAULT_LOOPBACK_HOSTS
            bound = _host_for_header(bind_host) + ":*"
            if not _matches(bound[:-2], hosts):
                hosts = (*hosts, bound)  # another loopback address, e.g. 127.0.0.2
        else:
            hosts = None
        origins = DEFAULT_LOOPBACK_ORIGINS if allowed_origins is None else tuple(allowed_origins)
        return cls(allowed_hosts=hosts, allowed_origins=origins)

    def host_allowed(self, host: str | None) -> bool:
        if self.allowed_hosts is None:
            return True
        return bool(host) and _matches(host or "", self.allowed_hosts)

    def origin_allowed(self, origin: str | None) -> bool:
        return origin is None or _matches(origin, self.allowed_origins)

    def refusal(self, headers: Headers) -> str | None:
        """Why a request with these headers is refused, or None when it is accepted."""
        host = headers.get("host")
        if not self.host_allowed(host):
            logger.warning("refused a request with Host %r (not in allowed_hosts)", host)
            return "Forbidden: Host header not allowed (see allowed_hosts in [gateway])"
        origin = headers.get("origin")
        if not self.origin_allowed(origin):
            logger.warning("refused a request with Origin %r (not in allowed_origins)", origin)
            return "Forbidden: Origin header not allowed (see allowed_origins in [gateway])"
        return None


def _host_for_header(bind_host: str) -> str:
    """How a bind address appears in a Host header: IPv6 in brackets."""
    host = bind_host.strip().lower()
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host
