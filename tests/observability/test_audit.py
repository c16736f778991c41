"""The audit log: one line per call, its outcome, the dispatch's attempts, no secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_agg.errors import BulkheadFull, RateLimited, UpstreamUnavailable
from mcp_agg.observability import audit
from mcp_agg.security import redact
from tests.fakes import OK, TOOL_ERROR


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def logs() -> Iterator[list[audit.AuditLog]]:
    """Audit logs a test opened, closed after it."""
    opened: list[audit.AuditLog] = []
    yield opened
    for log in opened:
        log.close()


def open_log(logs: list[audit.AuditLog], path: Path, *, arguments: bool = False) -> audit.AuditLog:
    log = audit.AuditLog(path, arguments=arguments)
    logs.append(log)
    return log


def test_one_line_per_call_with_every_field(tmp_path: Path, logs: list[audit.AuditLog]) -> None:
    log = open_log(logs, tmp_path / "audit.jsonl")
    with log.record("units_add", "units", {"a": 1, "b": 2}) as entry:
        audit.note_attempt("units-1")
        audit.note_attempt("units-2")
        assert entry.result(OK) is OK
    (line,) = lines(log.path)
    assert line["tool"] == "units_add"
    assert line["server"] == "units"
    assert line["replica"] == "units-2"
    assert line["attempts"] == 2
    assert line["outcome"] == "ok"
    assert line["client"] == "stdio"  # no HTTP request in context
    assert line["time"].endswith("+00:00")
    assert line["duration_ms"] >= 0
    assert "arguments" not in line  # only with audit_arguments
    assert "error" not in line


def test_outcomes(tmp_path: Path, logs: list[audit.AuditLog]) -> None:
    log = open_log(logs, tmp_path / "audit.jsonl", arguments=True)
    with log.record("units_divide", "units", {"a": 1, "b": 0}) as entry:
        entry.result(TOOL_ERROR)
    with log.record("units_add", "units", {}) as entry:
        audit.note_failure(UpstreamUnavailable("no replica of 'units' could take it"))
        entry.result(TOOL_ERROR)
    with log.record("units_add", "units", {}) as entry:
        audit.note_failure(BulkheadFull("units: 2 calls at once"))
        entry.result(TOOL_ERROR)
    with log.record("units_add", "units", {}) as entry:
        entry.refused({"content": [{"type": "text", "text": "units_add: rate limited"}]})
    with log.record("units_add", "units", {}) as entry:
        relayed = dict(OK)
        entry.result({"content": [{"type": "text", "text": "too large"}]}, relayed)
    with pytest.raises(RateLimited), log.record("units_add", "units", {}):
        raise RateLimited("slow down", retry_after=1.0)
    with pytest.raises(RuntimeError), log.record("units_add", "units", {}):
        raise RuntimeError("boom")
    got = lines(log.path)
    assert [line["outcome"] for line in got] == [
        "tool_error",
        "error",
        "refused",
        "refused",
        "refused",
        "refused",
        "error",
    ]
    assert got[0]["arguments"] == {"a": 1, "b": 0}
    assert "no replica" in got[1]["error"]
    assert got[3]["error"] == "units_add: rate limited"
    assert got[6]["error"] == "boom"


def test_no_trace_outside_an_audited_call() -> None:
    audit.note_attempt("units-1")  # no-op, no error
    assert audit.current_trace.get() is None
    with audit.record(None, "x", "y", {}) as entry:
        assert entry.result(OK) is OK
        assert audit.current_trace.get() is None


def test_a_write_failure_never_fails_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = audit.AuditLog(tmp_path / "missing-folder" / "audit.jsonl")
    with log.record("units_add", "units", {}) as entry:
        entry.result(OK)
    with log.record("units_add", "units", {}) as entry:
        entry.result(OK)
    assert caplog.text.count("cannot write") == 1  # reported, not once per call


def test_secrets_are_redacted(tmp_path: Path, logs: list[audit.AuditLog]) -> None:
    redact.install({"sk-very-secret-value"})
    try:
        log = open_log(logs, tmp_path / "audit.jsonl", arguments=True)
        with log.record("units_add", "units", {"key": "sk-very-secret-value"}) as entry:
            entry.result(OK)
    finally:
        redact.install(())
    text = (tmp_path / "audit.jsonl").read_text()
    assert "sk-very-secret-value" not in text
    assert lines(log.path)[0]["arguments"] == {"key": "***"}
