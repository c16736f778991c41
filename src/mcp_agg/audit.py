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
logged and never fails the call. Without `audit_log`, `record` costs one `None` check.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mcp_agg.config import AuthConfig
from mcp_agg.errors import RefusedError
from mcp_agg.redact import redact
from mcp_agg.security.auth import caller_id

__all__ = [
    "AuditLog",
    "CallTrace",
    "current_trace",
    "note_attempt",
    "note_failure",
    "record",
]

logger = logging.getLogger(__name__)

#: Seconds between two reports of a failing audit log.
_REPORT_EVERY = 60.0


@dataclass(slots=True)
class CallTrace:
    """What the group's dispatch did for one call (filled while the call runs), and
    how the call ended (`outcome` and `error`, set when it has)."""

    attempts: int = 0
    replica: str | None = None
    #: The gateway's reason when no backend answer came (relayed as an error result).
    failure: str | None = None
    #: Whether that reason is one of the gateway's refusals (a full bulkhead).
    refused: bool = False
    #: `ok`, `tool_error`, `error` or `refused` (see the module docstring).
    outcome: str | None = None
    #: The reason of an `error` or `refused` outcome.
    error: str | None = None


#: Set only while an audited call runs: the dispatch costs nothing more otherwise.
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
        trace.failure = str(reason)
        trace.refused = isinstance(reason, RefusedError)


class _Entry:
    """One call being audited; `result` classifies the wire result it passes through."""

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

    @contextlib.contextmanager
    def record(
        self,
        tool: str,
        server: str | None,
        arguments: dict[str, Any] | None,
        then: Callable[[CallTrace], None] | None = None,
    ) -> Iterator[_Entry]:
        """Audit the call made inside the block; an exception out of it is its outcome.

        `then` gets the call's `CallTrace` once it has ended (tracing reads the outcome).
        """
        entry = _Entry()
        trace = CallTrace()
        token = current_trace.set(trace)
        started = time.perf_counter()
        error: str | None = None
        try:
            yield entry
        except RefusedError as exc:
            entry.outcome, error = "refused", str(exc)
            raise
        except asyncio.CancelledError:  # the gateway runs on asyncio
            entry.outcome, error = "error", "cancelled"
            raise
        except BaseException as exc:
            entry.outcome, error = "error", str(exc) or type(exc).__name__
            raise
        finally:
            current_trace.reset(token)
            if entry.outcome == "tool_error" and trace.failure is not None:
                entry.outcome = "refused" if trace.refused else "error"
                error = trace.failure
            elif entry.outcome == "refused" and error is None:
                error = entry.reason or "refused by the gateway's limits"
            trace.outcome, trace.error = entry.outcome or "error", error
            self.write(
                tool=tool,
                server=server,
                replica=trace.replica,
                attempts=trace.attempts,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                outcome=trace.outcome,
                error=error,
                arguments=arguments,
            )
            if then is not None:
                then(trace)

    def write(
        self,
        *,
        tool: str,
        server: str | None,
        outcome: str,
        replica: str | None = None,
        attempts: int = 0,
        duration_ms: float = 0.0,
        error: str | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Append one line; never raises."""
        try:
            line: dict[str, Any] = {
                "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                "client": caller_id(self.auth),
                "tool": tool,
                "server": server,
                "replica": replica,
                "attempts": attempts,
                "duration_ms": duration_ms,
                "outcome": outcome,
            }
            if error is not None:
                line["error"] = error
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


def record(
    log: AuditLog | None,
    tool: str,
    server: str | None,
    arguments: dict[str, Any] | None,
    *,
    then: Callable[[CallTrace], None] | None = None,
) -> contextlib.AbstractContextManager[_Entry]:
    """`log.record(...)`; without an audit log the call is only classified for `then`,
    and with neither this is a no-op."""
    if log is None:
        if then is None:
            return _NULL
        log = _UNWRITTEN
    return log.record(tool, server, arguments, then)


class _Unwritten(AuditLog):
    """Classifies calls for `then` without writing them anywhere."""

    def write(self, **fields: Any) -> None:
        return None


_UNWRITTEN = _Unwritten(Path("/dev/null"))


class _NullContext(contextlib.AbstractContextManager[_Entry]):
    def __enter__(self) -> _Entry:
        return _NULL_ENTRY

    def __exit__(self, *exc: object) -> None:
        return None


_NULL = _NullContext()
