"""The stdio front's answer to the handshake, given before the MCP stack is imported.

A stdio client starts the gateway and waits for its answer to `initialize` (or, in the
2026-07-28 era, `server/discover`) before it sends anything else, and gives up after a
timeout of its own. The answer needs none of the gateway's state: the server's name,
version and capabilities, and the protocol version negotiated from the client's
(`front/starting.py` lets it through at once). But the SDK that gives it takes 1.5-2 s of
CPU to import, and the backends started early (`backend/early.py`) import the same stack
beside it on the same cores: with 5 backends on 2 cores the answer came after 6 s, with
20 after 20 s (docs/benchmarks.md).

So `serve` reads the client's first line in a thread of its own as soon as the config
is loaded. When it is a well-formed `initialize`, or a `server/discover` at a version
of the 2026-07-28 era, the thread answers it as the SDK will (the negotiation of
`mcp.server.runner`, the capabilities of the gateway's server) and stops reading. The
stdio front then hands that line to the SDK's session as if just read, so the session's
state is the SDK's own, and drops the SDK's answer to it once it has checked that it is
the answer already given: a mismatch is logged as an error, and the tests
(`tests/front/test_earlyinit.py`, `tests/e2e/test_startup.py`) hold the two to agreeing.
Anything else (another request first, a malformed or oversized line, an unknown
version asked of `server/discover`, stdin that is a file) is left to the SDK, as before.

Nothing here imports `mcp`, `fastmcp` or pydantic.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from mcp_agg.front.fds import pollable, write_all

__all__ = [
    "CAPABILITIES",
    "HANDSHAKE_VERSIONS",
    "MODERN_CAPABILITIES",
    "MODERN_VERSIONS",
    "EarlyAnswer",
    "EarlyInitialize",
    "early_answer",
]

logger = logging.getLogger(__name__)

#: The revisions the `initialize` handshake reaches, oldest to newest: the SDK's
#: `mcp_types.version.HANDSHAKE_PROTOCOL_VERSIONS` (importing which would import the
#: package's pydantic models: half a second).
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
#: The revisions of the stateless era (`MODERN_PROTOCOL_VERSIONS`).
MODERN_VERSIONS = ("2026-07-28",)
#: What the gateway's server declares in the handshake: FastMCP's capabilities for the
#: handlers `front/server.py` gives it, the same for every config.
CAPABILITIES: dict[str, Any] = {
    "logging": {},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "tools": {"listChanged": True},
    "completions": {},
}
#: ... and in `server/discover`, with the MCP Apps extension FastMCP declares there.
MODERN_CAPABILITIES: dict[str, Any] = {
    **CAPABILITIES,
    "extensions": {"io.modelcontextprotocol/ui": {}},
}
_META = "io.modelcontextprotocol/"
#: Seconds between looks at whether the front wants stdin back.
_POLL = 0.05
#: Bytes read at a time.
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class EarlyAnswer:
    """The handshake answered early: its request id and the result sent."""

    id: int | str
    result: dict[str, Any]


def early_answer(line: bytes, name: str, version: str) -> EarlyAnswer | None:
    """The answer to `line` when it is a handshake the SDK would accept, else None (the
    SDK answers it).

    As strict as the SDK's validation where a client could differ: the four keys of a
    request and no other, an integer or string id, a protocol version, client info with
    a name and a version, and capabilities that are objects.
    """
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or set(message) != {"jsonrpc", "id", "method", "params"}:
        return None
    request_id, params = message["id"], message["params"]
    if (
        message["jsonrpc"] != "2.0"
        or isinstance(request_id, bool)
        or not isinstance(request_id, int | str)
        or not isinstance(params, dict)
    ):
        return None
    server = {"name": name, "version": version}
    if message["method"] == "initialize":
        result = _initialized(params, server)
    elif message["method"] == "server/discover":
        result = _discovered(params, server)
    else:
        return None
    return None if result is None else EarlyAnswer(request_id, result)


def _initialized(params: dict[str, Any], server: dict[str, str]) -> dict[str, Any] | None:
    """`initialize`'s result: the client's version if the handshake reaches it, else
    the newest that it does (as `ServerRunner._negotiate_initialize`)."""
    requested = params.get("protocolVersion")
    if not isinstance(requested, str) or not _client(
        params.get("clientInfo"), params.get("capabilities")
    ):
        return None
    negotiated = requested if requested in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[-1]
    return {"protocolVersion": negotiated, "capabilities": CAPABILITIES, "serverInfo": server}


def _discovered(params: dict[str, Any], server: dict[str, str]) -> dict[str, Any] | None:
    """`server/discover`'s result, for a request at a version of the era and with no
    other metadata (an unsupported version is the SDK's error to give)."""
    meta = params.get("_meta")
    keys = {f"{_META}protocolVersion", f"{_META}clientInfo", f"{_META}clientCapabilities"}
    if set(params) != {"_meta"} or not isinstance(meta, dict) or set(meta) != keys:
        return None
    if meta[f"{_META}protocolVersion"] not in MODERN_VERSIONS or not _client(
        meta[f"{_META}clientInfo"], meta[f"{_META}clientCapabilities"]
    ):
        return None
    return {
        "_meta": {f"{_META}serverInfo": server},
        "ttlMs": 0,
        "cacheScope": "private",
        "supportedVersions": list(MODERN_VERSIONS),
        "capabilities": MODERN_CAPABILITIES,
        "resultType": "complete",
    }


def _client(info: object, capabilities: object) -> bool:
    """Client info with a name and a version, and capabilities that are objects."""
    return (
        isinstance(info, dict)
        and isinstance(info.get("name"), str)
        and isinstance(info.get("version"), str)
        and isinstance(capabilities, dict)
        and all(isinstance(value, dict) for value in capabilities.values())
    )


class EarlyInitialize:
    """Reads the client's first line on `fd_in` in a thread and answers it on `fd_out`
    when it is a handshake (module docstring), until the front takes stdin over.

    `limit`: the longest line the front reads (`max_message_bytes`); a first line
    longer than that is left to the front, which refuses it.
    """

    def __init__(
        self, name: str, version: str, *, limit: int, fd_in: int = 0, fd_out: int = 1
    ) -> None:
        self._name = name
        self._version = version
        self._limit = limit
        self._in = fd_in
        self._out = fd_out
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read = b""
        self._answer: EarlyAnswer | None = None

    def start(self) -> None:
        """Start reading, when `fd_in` can be waited on (a pipe, a socket, a terminal);
        a regular file or /dev/null is left to the front."""
        if not pollable(self._in, selectors.EVENT_READ):
            return
        self._thread = threading.Thread(target=self._run, name="early initialize", daemon=True)
        self._thread.start()

    def handover(self) -> tuple[bytes, EarlyAnswer | None]:
        """Stop reading; the bytes read, which the front reads first, and the answer
        given, if one was."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        read, self._read = self._read, b""
        return read, self._answer

    def _run(self) -> None:
        buffer = bytearray()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._in, selectors.EVENT_READ)
                while not self._stop.is_set() and b"\n" not in buffer:
                    if len(buffer) > self._limit:
                        break
                    if not selector.select(_POLL):
                        continue
                    try:
                        chunk = os.read(self._in, _CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        break  # EOF: the front sees it too
                    buffer += chunk
        except OSError as exc:
            logger.debug("reading the client's first line failed: %s", exc)
        self._read = bytes(buffer)
        line, newline, _ = self._read.partition(b"\n")
        if not newline or len(line) > self._limit:
            return
        answer = early_answer(line, self._name, self._version)
        if answer is None:
            return
        response = {"jsonrpc": "2.0", "id": answer.id, "result": answer.result}
        try:
            write_all(self._out, orjson.dumps(response) + b"\n")
        except OSError as exc:
            logger.debug("answering the handshake failed: %s", exc)
            return  # the front finds stdout closed in turn
        self._answer = answer
        logger.debug("answered the handshake (%s) before importing the MCP stack", answer.id)
