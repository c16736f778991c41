"""The commands' logging: one format on stderr, secrets redacted, the libraries quieted."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from mcp_agg.cli.output import fail
from mcp_agg.security.redact import RedactingFilter

__all__ = ["quiet_relayed_deprecations", "setup_logging"]


def setup_logging(level: str | None, default: str) -> None:
    """Log at `level` (`--log-level`), else `$MCP_AGG_LOG_LEVEL`, else `default`."""
    chosen = (level or os.environ.get("MCP_AGG_LOG_LEVEL") or default).upper()
    if chosen not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        fail(2, f"--log-level: unknown level {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())  # configured secrets never reach the logs
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(chosen)
    # FastMCP logs through its own (rich) handler and not to the root: one format for all.
    fastmcp_logger = logging.getLogger("fastmcp")
    fastmcp_logger.handlers.clear()
    fastmcp_logger.propagate = True
    server_logger = logging.getLogger("fastmcp.server.server")
    if not any(isinstance(f, _BackendErrorFilter) for f in server_logger.filters):
        server_logger.addFilter(_BackendErrorFilter())
    # The SDK and FastMCP are chatty at INFO about every request.
    for name in ("mcp", "fastmcp", "httpx", "httpx2", "httpcore2", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def quiet_relayed_deprecations() -> None:
    """The SDK's deprecation warnings for what the gateway relays on purpose, kept off stderr.

    The gateway speaks the handshake era to its backends on purpose and relays a
    client's log level, subscriptions and roots there; the SDK marks each of those
    methods deprecated (the modern era dropped them) and would print a warning on the
    first relay. Only warnings of this class raised by the gateway's own calls are
    silenced: any other still reaches stderr. Called by each command once it has
    imported the gateway, not with the logging: importing the warning's class imports
    the whole SDK (`mcp/__init__`), which `serve` must not do before it has started its
    backends (backend/early.py).
    """
    from mcp.shared.exceptions import MCPDeprecationWarning

    warnings.filterwarnings("ignore", category=MCPDeprecationWarning, module=r"mcp_agg\.")


class _BackendErrorFilter(logging.Filter):
    """A backend's JSON-RPC error is relayed to the client as it is: not a gateway fault.

    FastMCP logs such an error with a traceback at ERROR; here it becomes one INFO line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from mcp.shared.exceptions import MCPError  # imported by now: the record came from it

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, MCPError):
            record.msg = f"{record.getMessage()}: backend answered: {error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True
