"""The key that seals a modern-era `requestState`, derived when first used, not at start.

The SDK's low-level server seals the `requestState` of every input-required result it
sends and unseals every echo (SEP-2322). Without a policy of its own, FastMCP installs
`RequestStateSecurity.ephemeral()`, whose AES-GCM codec derives its key with HKDF as the
server is built: the first use of `cryptography`'s OpenSSL in the process, which
initializes it, about 1.4 MiB of the gateway's resident memory at start
(docs/benchmarks.md, "Startup and import time"). Most gateways never seal one. The policy
here is the same (a random key held by this process alone, the SDK's codec, TTL and
principal binding, the server's name as audience); only the codec is made at the
first seal or unseal.
"""

from __future__ import annotations

import os

from mcp.server.request_state import AESGCMRequestStateCodec, RequestStateSecurity

__all__ = ["ephemeral_request_state"]


class _FirstUseCodec:
    """`AESGCMRequestStateCodec` under a key drawn now, built at its first use."""

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._codec: AESGCMRequestStateCodec | None = None

    def _built(self) -> AESGCMRequestStateCodec:
        if self._codec is None:
            self._codec = AESGCMRequestStateCodec([self._key])
        return self._codec

    def seal(self, payload: bytes) -> str:
        return self._built().seal(payload)

    def unseal(self, token: str) -> bytes:
        return self._built().unseal(token)


def ephemeral_request_state() -> RequestStateSecurity:
    """What `RequestStateSecurity.ephemeral()` gives, its key derived at first use."""
    return RequestStateSecurity(codec=_FirstUseCodec())
