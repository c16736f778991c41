"""What each console page shows, read from the running gateway as plain data.

Nothing here describes state a second time: servers come from the admin API's
`servers_state` (what `/admin/servers` and `mcp-agg status --json` print), tools from
`tool_rows` (what `mcp-agg tools --json` prints), figures from the metrics' recent calls,
and the recent calls themselves from the audit log when there is one (it names clients).
Every string that may quote a backend (errors, stderr, descriptions) is redacted here,
once, as the admin API redacts its JSON.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp_agg.front.admin import servers_state
from mcp_agg.observability.audit_tail import recent_lines
from mcp_agg.observability.recent import KEEP, RecentCalls, Second
from mcp_agg.observability.status import tool_rows
from mcp_agg.security.pinning import parts_of
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from mcp_agg.core.views import ConsoleHost
    from mcp_agg.front.ui.signins import SignInCache

__all__ = [
    "Chart",
    "catalog_page",
    "chart_of",
    "pin_diff",
    "servers_page",
    "traffic_page",
]

#: Lines of a backend's stderr shown with its last error.
_STDERR_LINES = 10
#: Seconds per bar of the traffic chart, and bars shown (ten minutes).
_BAR_SECONDS = 10
_BARS = 60
#: Recent calls listed on the traffic page.
_RECENT = 50


def _clean(value: Any) -> Any:
    """`value` with configured secrets redacted from every string in it."""
    return json.loads(redact(json.dumps(value)))


async def servers_page(gateway: ConsoleHost, sign_ins: SignInCache) -> list[dict[str, Any]]:
    """Every server with its replicas (as the admin API has them), each with the tail
    of its backend's stderr; a server with OAuth with its sign-in's state (as `status
    --json` has it, read again every few seconds: `signins.py`)."""
    tails = {u.id: list(u.output.tail)[-_STDERR_LINES:] for u in gateway.upstreams}
    specs = [replica.spec for group in gateway.groups.values() for replica in group.replicas]
    states = await sign_ins.states(specs)
    servers = servers_state(gateway)
    for server in servers:
        server["sign_in"] = states.get(server["name"])
        for replica in server["replicas"]:
            replica["stderr"] = tails.get(replica["id"], [])
    cleaned: list[dict[str, Any]] = _clean(servers)
    return cleaned


def catalog_page(gateway: ConsoleHost, query: str = "") -> dict[str, Any]:
    """The catalog's tools (with pin state and figures), resources, templates and
    prompts, those matching `query` (in a name, server, original name or description)."""
    recent = _recent(gateway)
    tools = tool_rows(gateway.catalog, gateway.pinner)
    for row in tools:
        figures = recent.tool(row["name"]) if recent is not None else None
        row["figures"] = (
            None
            if figures is None
            else {
                "calls": figures.calls,
                "error_rate": figures.error_rate,
                "p50_ms": figures.p50_ms,
                "p99_ms": figures.p99_ms,
            }
        )
        row["diff"] = pin_diff(gateway, row["name"]) if row["pin"] == "changed" else None
    catalog = gateway.catalog
    resources = {id(r): r for r in catalog.resources.values()}.values()
    others = {
        "resources": [
            {"name": r.exposed, "server": r.group.name, "original_name": r.original}
            for r in resources
        ],
        "templates": [
            {"name": t.uri_template, "server": t.group.name, "original_name": t.original}
            for t in catalog.templates
        ],
        "prompts": [
            {"name": name, "server": p.group.name, "original_name": p.original}
            for name, p in catalog.prompts.items()
        ],
    }
    words = query.lower().split()
    page: dict[str, Any] = _clean(
        {
            "tools": _matching(tools, words),
            **{kind: _matching(rows, words) for kind, rows in others.items()},
            "pinning": gateway.pinner.mode != "off" and gateway.pinner.lock is not None,
            "metrics": recent is not None,
        }
    )
    return page


def _matching(rows: Iterable[dict[str, Any]], words: Sequence[str]) -> list[dict[str, Any]]:
    def text(row: dict[str, Any]) -> str:
        fields = ("name", "server", "original_name", "description")
        return " ".join(str(row.get(field) or "") for field in fields).lower()

    return sorted(
        (row for row in rows if all(word in text(row) for word in words)),
        key=lambda row: str(row["name"]),
    )


def pin_diff(gateway: ConsoleHost, name: str) -> str | None:
    """A unified diff of a changed tool's pinned definition against its current one;
    None if the lock keeps no definition for it (written before it kept them)."""
    lock = gateway.pinner.lock
    pinned = lock.tools.get(name) if lock is not None else None
    tool = gateway.catalog.tools.get(name) or gateway.pinner.withheld.get(name)
    if pinned is None or tool is None:
        return None
    before = pinned.parts_pinned()
    if before is None:
        return None
    after = parts_of(tool.definition)
    lines = difflib.unified_diff(_pretty(before), _pretty(after), "pinned", "now", lineterm="", n=2)
    return "\n".join(lines)


def _pretty(parts: dict[str, Any]) -> list[str]:
    return json.dumps(parts, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


@dataclass(frozen=True, slots=True)
class Chart:
    """The traffic chart: one bar per `_BAR_SECONDS`, calls and failures per second."""

    bars: tuple[tuple[float, float], ...]
    peak: float
    calls_per_second: float
    error_rate: float


def chart_of(seconds: Sequence[Second]) -> Chart:
    """Bars of `_BAR_SECONDS` over `seconds` (oldest first), and the last minute's
    rates."""
    bars = []
    for start in range(0, len(seconds), _BAR_SECONDS):
        chunk = seconds[start : start + _BAR_SECONDS]
        calls = sum(s.calls for s in chunk) / _BAR_SECONDS
        failures = sum(s.failures for s in chunk) / _BAR_SECONDS
        bars.append((round(calls, 2), round(failures, 2)))
    minute = seconds[-60:]
    calls = sum(s.calls for s in minute)
    failures = sum(s.failures for s in minute)
    return Chart(
        bars=tuple(bars),
        peak=max((calls for calls, _ in bars), default=0.0) or 1.0,
        calls_per_second=round(calls / 60, 2),
        error_rate=failures / calls if calls else 0.0,
    )


async def traffic_page(gateway: ConsoleHost) -> dict[str, Any]:
    """The last ten minutes as a chart, the last calls, and the refused ones. The calls
    come from the audit log's last lines when `[gateway] audit_log` is set (with who
    made them), else from the metrics' records (which do not know the client)."""
    recent = _recent(gateway)
    if recent is None:
        return {"metrics": False}
    now = time.time()
    settings = gateway.config.gateway
    audited = settings.audit_log is not None
    problem = None
    if settings.audit_log is not None:
        path = gateway.config.base_dir / settings.audit_log
        try:
            lines = await recent_lines(path, KEEP)
        except OSError as exc:
            lines, problem = [], f"cannot read the audit log {path}: {exc.strerror or exc}"
        records = [
            {
                "ago": round(now - line.at, 1),
                "client": line.client,
                "tool": line.tool,
                "server": line.server,
                "outcome": line.outcome,
                "duration_ms": round(line.duration_ms, 1),
                "replica": line.replica,
                "error": line.error,
            }
            for line in lines
        ]
    else:
        records = [
            {
                "ago": round(now - finished.at, 1),
                "client": None,
                "tool": finished.call.tool,
                "server": finished.call.server,
                "outcome": finished.call.outcome,
                "duration_ms": round(finished.call.duration * 1000, 1),
                "replica": finished.call.replica,
                "error": finished.call.error,
            }
            for finished in reversed(recent.records)
        ]
    return {
        "metrics": True,
        "audited": audited,
        "audit_problem": problem,
        "chart": chart_of(recent.seconds(_BARS * _BAR_SECONDS)),
        "records": _clean(records[:_RECENT]),
        "refused": _clean([r for r in records if r["outcome"] == "refused"][:_RECENT]),
    }


def _recent(gateway: ConsoleHost) -> RecentCalls | None:
    """The metrics' recent calls (turning metrics on, as /metrics does); None with
    `[gateway] metrics = false`."""
    metrics = gateway.collect_metrics()
    return metrics.recent if metrics is not None else None
