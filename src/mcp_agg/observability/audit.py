"""The audit log: one JSON line per `tools/call`, appended to `[gateway] audit_log`.

A line: `time` (ISO 8601, UTC), `client` (who called), `tool` (exposed name), `server`
(its group), `replica` (the one that answered, or was tried last), `attempts` (replicas
tried, failover included), `duration_ms`, `outcome` and, with `audit_arguments = true`,
`arguments`. Outcomes:

- `ok`: the backend answered with a result;
- `tool_error`: the backend's tool ran and answered `isError: true`;
- `error`: no backend answer (every replica failed, timeout) or a protocol error;
- `refused`: the gateway's own limits declined the call (rate limit, bulkhead, size);
- `unknown_tool`: no such tool for this caller (never existed, withheld by pinning,
  or not allowed): no backend saw it.

`error` and `refused` lines carry the reason in `error`. Every line is redacted of the
configured secrets. Writing is a small append and a flush per line; a write failure is
logged and never fails the call.

The outcome of a call is classified here only: `record` makes one `CallRecord` per call
and hands it to the audit log (when configured) and to an observer (the metrics,
`mcp_agg.observability`). With neither, `record` costs two `None` checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from mcp_agg.config import AuthConfig
from mcp_agg.errors import GatewayError, RefusedError
from mcp_agg.security.auth import caller_id
from mcp_agg.security.redact import redact

__all__ = [
    "AuditLog",
    "CallObserver",
    "CallRecord",
    "CallTrace",
    "current_trace",
    "note_attempt",
    "note_failure",
    "record",
    "unknown_tool",
]

logger = logging.getLogger(__name__)

#: Seconds between two reports of a failing audit log.
_REPORT_EVERY = 60.0


@dataclass(slots=True)
class CallTrace:
    """What the group's dispatch did for one call (filled while the call runs)."""

    attempts: int = 0
    replica: str | None = None
    #: The gateway's reason when no backend answer came (relayed as an error result).
    failure: str | None = None
    #: Whether that reason is one of the gateway's refusals (a full bulkhead).
    refused: bool = False


@dataclass(slots=True)
class CallRecord:
    """One finished `tools/call`: what its audit line says and what the metrics count."""

    tool: str
    #: The tool's group (`gateway` for the gateway's own tools); None: unknown tool.
    server: str | None
    #: `ok`, `tool_error`, `error`, `refused` or `unknown_tool` (module docstring).
    outcome: str
    replica: str | None = None
    attempts: int = 0
    #: Seconds from admission to result.
    duration: float = 0.0
    error: str | None = None


#: Told of every finished call; must be cheap (it runs on every call) and not raise.
CallObserver = Callable[[CallRecord], None]

#: Set only while a recorded call runs: the dispatch costs nothing more otherwise.
current_trace: ContextVar[CallTrace | None] = ContextVar("mcp_agg_call_trace", default=None)


def note_attempt(replica: str) -> None:
    """A replica was picked for an attempt of the current call (group.py)."""
    trace = current_trace.get()
    if trace is not None:
        trace.attempts += 1
        trace.replica = replica


def note_failure(reason: object) -> None:
    """The current call got no backend answer; its error result is the gateway's."""
    trace = current_trace.get()
    if trace is not None:
        trace.failure = reason.logged if isinstance(reason, GatewayError) else str(reason)
        trace.refused = isinstance(reason, RefusedError)


class _Entry:
    """One call being recorded; `result` classifies the wire result it passes through."""

    __slots__ = ("outcome", "reason")

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.reason: str | None = None

    def result(self, wire: dict[str, Any], relayed: dict[str, Any] | None = None) -> dict[str, Any]:
        """`wire` as it is; a `relayed` result that `wire` replaced was refused (size)."""
        if relayed is not None and wire is not relayed:
            self.refused(wire)
        else:
            self.outcome = "tool_error" if wire.get("isError") else "ok"
        return wire

    def refused(self, wire: dict[str, Any]) -> dict[str, Any]:
        """`wire`, the gateway's refusal of the call, as it is."""
        self.outcome = "refused"
        self.reason = _text_of(wire)
        return wire


def _text_of(wire: dict[str, Any]) -> str | None:
    content = wire.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        text = content[0].get("text")
        return text if isinstance(text, str) else None
    return None


class _NullEntry(_Entry):
    def result(self, wire: dict[str, Any], relayed: dict[str, Any] | None = None) -> dict[str, Any]:
        return wire

    def refused(self, wire: dict[str, Any]) -> dict[str, Any]:
        return wire


_NULL_ENTRY = _NullEntry()


class AuditLog:
    """Appends audit lines to one file, opened on first use and kept open."""

    def __init__(
        self, path: Path, *, arguments: bool = False, auth: AuthConfig | None = None
    ) -> None:
        self.path = path
        self.arguments = arguments
        self.auth = auth
        self._file: IO[str] | None = None
        self._last_report = -_REPORT_EVERY

    def record(
        self, tool: str, server: str | None, arguments: dict[str, Any] | None
    ) -> contextlib.AbstractContextManager[_Entry]:
        """Audit the call made inside the block; an exception out of it is its outcome."""
        return _Recording(self, None, tool, server, arguments)

    def write(self, call: CallRecord, arguments: dict[str, Any] | None) -> None:
        """Append the line of a finished call; never raises."""
        try:
            line: dict[str, Any] = {
                "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                "client": caller_id(self.auth),
                "tool": call.tool,
                "server": call.server,
                "replica": call.replica,
                "attempts": call.attempts,
                "duration_ms": round(call.duration * 1000, 3),
                "outcome": call.outcome,
            }
            if call.error is not None:
                line["error"] = call.error
            if self.arguments:
                line["arguments"] = arguments or {}
            text = redact(json.dumps(line, ensure_ascii=False, default=str))
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(text + "\n")
            self._file.flush()
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        with contextlib.suppress(Exception):
            if self._file is not None:
                self._file.close()
        self._file = None  # opened again for the next line
        now = time.monotonic()
        if now - self._last_report >= _REPORT_EVERY:
            self._last_report = now
            logger.error("audit log %s: cannot write: %s", self.path, exc)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class _Recording(_Entry):
    """One call being recorded: its trace, its timing, and its outcome on the way out."""

    __slots__ = (
        "_arguments",
        "_log",
        "_observe",
        "_server",
        "_started",
        "_token",
        "_tool",
        "trace",
    )

    def __init__(
        self,
        log: AuditLog | None,
        observe: CallObserver | None,
        tool: str,
        server: str | None,
        arguments: dict[str, Any] | None,
    ) -> None:
        super().__init__()
        self._log = log
        self._observe = observe
        self._tool = tool
        self._server = server
        self._arguments = arguments
        self.trace = CallTrace()
        self._token: Token[CallTrace | None] | None = None
        self._started = 0.0

    def __enter__(self) -> _Entry:
        self._token = current_trace.set(self.trace)
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration = time.perf_counter() - self._started
        if self._token is not None:
            current_trace.reset(self._token)
        trace = self.trace
        error: str | None = None
        if isinstance(exc, RefusedError):
            self.outcome, error = "refused", str(exc)
        elif isinstance(exc, asyncio.CancelledError):  # the gateway runs on asyncio
            self.outcome, error = "error", "cancelled"
        elif exc is not None:
            self.outcome, error = "error", str(exc) or type(exc).__name__
        if self.outcome == "tool_error" and trace.failure is not None:
            self.outcome = "refused" if trace.refused else "error"
            error = trace.failure
        elif self.outcome == "refused" and error is None:
            error = self.reason or "refused by the gateway's limits"
        call = CallRecord(
            self._tool,
            self._server,
            self.outcome or "error",
            trace.replica,
            trace.attempts,
            duration,
            error,
        )
        _deliver(call, self._arguments, self._log, self._observe)


def record(
    log: AuditLog | None,
    tool: str,
    server: str | None,
    arguments: dict[str, Any] | None,
    observe: CallObserver | None = None,
) -> contextlib.AbstractContextManager[_Entry]:
    """Record the call made inside the block: its audit line in `log` and its
    `CallRecord` to `observe`; a no-op context when there is neither."""
    if log is None and observe is None:
        return _NULL
    return _Recording(log, observe, tool, server, arguments)


def unknown_tool(
    log: AuditLog | None,
    observe: CallObserver | None,
    tool: str,
    arguments: dict[str, Any] | None,
) -> None:
    """A call of a tool this caller cannot see (no backend saw it), recorded as one."""
    if log is None and observe is None:
        return
    _deliver(CallRecord(tool, None, "unknown_tool"), arguments, log, observe)


def _deliver(
    call: CallRecord,
    arguments: dict[str, Any] | None,
    log: AuditLog | None,
    observe: CallObserver | None,
) -> None:
    """A finished call's record to its audit line and its observer, whichever there are."""
    if log is not None:
        log.write(call, arguments)
    if observe is not None:
        observe(call)


class _NullContext(contextlib.AbstractContextManager[_Entry]):
    def __enter__(self) -> _Entry:
        return _NULL_ENTRY

    def __exit__(self, *exc: object) -> None:
        return None


_NULL = _NullContext()
