"""What the soak found: calls by kind, server and fault class; lost idempotent calls; the
errors seen; the gateways' memory, fds and CPU; the processes left.

A replica is *disturbed* from the moment a fault hits it until GRACE seconds after that
fault was undone (for a kill: after its process is back). An idempotent call is **lost**
when it failed although at least one replica of its server (as its gateway sees them) was
undisturbed for the call's whole time in the gateway, from its start to its answer (which
the gateway's deadline bounds). Client drops disturb no replica: a call that fails while
another client leaves is unexplained, not excused.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from report import pipe_table
from soak_faults import CLASSES, DROP, Fault
from soak_load import MIX, CallRecord
from soak_procs import Usage
from soak_setup import FRONTS, Topology

__all__ = ["GRACE", "Findings", "count_duplicates", "criteria", "judge", "log_kinds", "summary"]

#: Seconds after a fault is undone during which its replica still counts as disturbed:
#: the gateway needs a health probe or a reconnect to see it is back.
GRACE = 5.0
#: RSS "flat": grown by at most this share of the start figure; fds: by at most this many.
RSS_FLAT = 0.10
FDS_FLAT = 10


@dataclass(slots=True)
class Judged:
    """One measured call and what was going on around it."""

    call: CallRecord
    #: The classes of the faults near it, client drops included, each with how long after
    #: the latest of them was undone the call ended (negative: before).
    classes: dict[str, float]
    #: Whether a replica of its server was disturbed at any time during it.
    disturbed: bool
    #: The replicas of its server that were not.
    clean: list[str]
    lost: bool


@dataclass(slots=True)
class Findings:
    judged: list[Judged]
    warmup: list[CallRecord]
    faults: list[Fault]
    usage: dict[str, list[Usage]]
    snapshots: dict[str, tuple[Usage | None, Usage | None]]
    left: dict[str, list[str]]
    seen: dict[str, int]
    duplicates: dict[str, int] = field(default_factory=dict)
    died: list[str] = field(default_factory=list)
    #: gateway → its warnings and errors by kind.
    logs: dict[str, Counter[str]] = field(default_factory=dict)
    #: Processes still below the soak once it had stopped everything, killed then.
    swept: int = 0


@dataclass(frozen=True, slots=True)
class _Window:
    """A replica disturbed by a fault of class `cls` from `start` to `end` (the fault was
    undone at `undone`, `end` is GRACE later)."""

    cls: str
    start: float
    undone: float
    end: float

    def overlaps(self, start: float, end: float) -> bool:
        return self.start <= end and start <= self.end


def _windows(faults: Iterable[Fault], run_end: float) -> dict[str, list[_Window]]:
    """Per replica tag, the times it was disturbed (a fault, then GRACE); client drops by
    their own times, under the front's name."""
    windows: dict[str, list[_Window]] = {}
    for fault in faults:
        end = fault.end if fault.end is not None else run_end
        grace = GRACE if fault.cls != DROP else 0.0
        window = _Window(fault.cls, fault.start, end, end + grace)
        windows.setdefault(fault.target, []).append(window)
    return windows


def judge(
    calls: Iterable[CallRecord], faults: list[Fault], topology: Topology, measured_from: float
) -> tuple[list[Judged], list[CallRecord]]:
    """The measured calls, judged; and the warm-up calls (begun before `measured_from`)."""
    calls = list(calls)
    windows = _windows(faults, max((call.end for call in calls), default=0.0))
    judged, warmup = [], []
    for call in calls:
        if call.start < measured_from:
            warmup.append(call)
            continue
        near: dict[str, list[_Window]] = {}  # replica tag → the windows the call overlaps
        for replica in topology.replicas_of(call.front, call.kind.server):
            mine = windows.get(replica.tag, [])
            near[replica.tag] = [w for w in mine if w.overlaps(call.start, call.end)]
        drops = windows.get(call.front, [])  # client drops: the HTTP front's
        found = [w for ws in near.values() for w in ws]
        found += [w for w in drops if w.overlaps(call.start, call.end)]
        classes: dict[str, float] = {}
        for window in found:
            after = call.end - window.undone
            classes[window.cls] = max(classes.get(window.cls, after), after)
        clean = [tag for tag, ws in near.items() if not ws]
        lost = call.kind.idempotent and not call.ok and bool(clean)
        judged.append(Judged(call, classes, len(clean) < len(near), clean, lost))
    return judged, warmup


def count_duplicates(counts: Path) -> dict[str, int]:
    """Keys executed more than once by the faulty backends, per tool (read: retried)."""
    if not counts.exists():
        return {}
    runs = Counter(
        (parts[1], parts[2])
        for parts in (line.split() for line in counts.read_text().splitlines())
        if len(parts) == 4 and parts[1] in {"read", "write"}
    )
    repeated = Counter(tool for (tool, _), times in runs.items() if times > 1)
    return {tool: repeated.get(tool, 0) for tool in ("read", "write")}


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (WARNING|ERROR|CRITICAL) (\S+) (.*)$")


def log_kinds(path: Path) -> Counter[str]:
    """A gateway's warnings and errors by kind (numbers and ids as N, the level unless a
    warning, the logger without `mcp_agg.`, cut at 110 characters), and its tracebacks."""
    kinds: Counter[str] = Counter()
    if not path.exists():
        return kinds
    for line in path.read_text(errors="replace").splitlines():
        if found := _LOG_LINE.match(line):
            level, logger, message = found.groups()
            level = "" if level == "WARNING" else f"{level} "
            kinds[f"{level}{logger.removeprefix('mcp_agg.')} {_normalize(message)}"[:110]] += 1
        elif line.startswith("Traceback"):
            kinds["(a traceback)"] += 1
    return kinds


# ---------------------------------------------------------------------------- tables


def _row(label: str, judged: Sequence[Judged]) -> list[str]:
    failed = [j for j in judged if not j.call.ok]
    unexplained = sum(1 for j in failed if not j.disturbed)
    return [
        label,
        str(len(judged)),
        str(len(judged) - len(failed)),
        str(len(failed)),
        str(unexplained),
        str(sum(j.lost for j in judged)),
    ]


_CALL_HEADER = ["", "calls", "ok", "failed", "failed, no backend fault", "lost"]


def _by_kind(judged: list[Judged]) -> list[str]:
    body = []
    for front in FRONTS:
        for idempotent in (True, False):
            label = f"{front} front, {'idempotent' if idempotent else 'non-idempotent'}"
            body.append(_row(label, [j for j in judged if _is(j, front, idempotent)]))
    body.append(_row("all", judged))
    notes = [
        "",
        f"A replica is disturbed from the moment a fault hits it until {GRACE:g} s after the"
        " fault was undone. **Lost**: an idempotent call that failed although at least one"
        " replica of its server, as its gateway sees them, was undisturbed from the call's"
        " start to its answer. **Failed, no backend fault**: no replica of its server was"
        " disturbed meanwhile (a client dropping its own call is no excuse).",
    ]
    return ["### Calls by front and kind", "", *pipe_table(_CALL_HEADER, body), *notes]


def _is(judged: Judged, front: str, idempotent: bool) -> bool:
    return judged.call.front == front and judged.call.kind.idempotent == idempotent


def _by_tool(judged: list[Judged]) -> list[str]:
    body = []
    for kind in MIX:
        label = f"`{kind.exposed}` ({'idempotent' if kind.idempotent else 'not'}: {kind.why})"
        body.append(_row(label, [j for j in judged if j.call.kind == kind]))
    return ["### Calls by tool", "", *pipe_table(_CALL_HEADER, body)]


def _by_fault(judged: list[Judged], faults: list[Fault]) -> list[str]:
    header = ["", "injected", "not undone", "calls near", "ok", "failed (idem.)"]
    header += ["failed (non-idem.)", "lost", "last failure after undone"]
    body = []
    for cls in [*CLASSES, DROP, "none"]:
        near = [j for j in judged if (cls in j.classes if cls != "none" else not j.classes)]
        mine = [f for f in faults if f.cls == cls]
        failed = [j for j in near if not j.call.ok]
        after = max((j.classes[cls] for j in failed if cls in j.classes), default=None)
        body.append(
            [
                cls,
                str(len(mine)) if cls != "none" else "",
                str(sum(not f.recovered for f in mine)) if cls != "none" else "",
                str(len(near)),
                str(len(near) - len(failed)),
                str(sum(j.call.kind.idempotent for j in failed)),
                str(sum(not j.call.kind.idempotent for j in failed)),
                str(sum(j.lost for j in near)),
                "" if after is None else f"{after:+.1f} s",
            ]
        )
    notes = [
        "",
        "Last failure after undone: of the failed calls near a fault of the class, the latest"
        " end relative to when that fault was undone (negative: while it held). A replica"
        f" counts as disturbed until {GRACE:g} s after: a figure near +{GRACE:g} s would say"
        " the gateway needs about that long to use a replica again.",
    ]
    return ["### Calls by fault class", "", *pipe_table(header, body), *notes]


def _lost(judged: list[Judged], limit: int = 10) -> list[str]:
    lost = [j for j in judged if j.lost]
    if not lost:
        return []
    out = ["### Lost calls", "", f"The first {min(limit, len(lost))} of {len(lost)}:", ""]
    for j in lost[:limit]:
        call = j.call
        error = (call.error or "")[:200].replace("`", "'")
        near = f"; near: {', '.join(sorted(j.classes))}" if j.classes else ""
        out.append(
            f"- {call.start:.1f}-{call.end:.1f} s, {call.front} front, `{call.kind.exposed}`"
            f" (undisturbed: {', '.join(j.clean)}{near}): `{error}`"
        )
    return out


def _normalize(error: str) -> str:
    error = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", error)
    error = re.sub(r"\d+(\.\d+)?", "N", error)
    return " ".join(error.split())[:140]


def _errors(judged: list[Judged], limit: int = 12) -> list[str]:
    failed = [j for j in judged if not j.call.ok]
    if not failed:
        return ["### Errors", "", "None."]
    groups: dict[str, list[Judged]] = {}
    for j in failed:
        groups.setdefault(_normalize(j.call.error or "no error recorded"), []).append(j)
    intro = "Each kind of error once, the most frequent first, with its first call:"
    out = ["### Errors", "", intro, ""]
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    for _, group in ordered[:limit]:
        first = group[0]
        call = first.call
        idem = sum(j.call.kind.idempotent for j in group)
        near = ", ".join(sorted({cls for j in group for cls in j.classes})) or "no fault"
        message = (call.error or "")[:300].replace("`", "'")
        out.append(
            f"- **{len(group)}** ({idem} idempotent, {sum(j.lost for j in group)} lost; near:"
            f" {near}). First at {call.start:.1f} s, {call.front} front, `{call.kind.exposed}`:"
            f" `{message}`"
        )
    if len(ordered) > limit:
        rest = sum(len(group) for _, group in ordered[limit:])
        out.append(f"- and {rest} more failures of {len(ordered) - limit} other kinds")
    return out


def _logs(logs: dict[str, Counter[str]], limit: int = 12) -> list[str]:
    total: Counter[str] = Counter()
    for kinds in logs.values():
        total.update(kinds)
    if not total:
        return ["### Gateway logs", "", "No warning or error logged."]
    body = [
        [f"`{kind.replace('|', '/')}`", *(str(logs.get(f, Counter())[kind]) for f in FRONTS)]
        for kind, _ in total.most_common(limit)
    ]
    out = ["### Gateway logs", "", "Warnings (and errors, named) the gateways logged: the most"]
    out[-1] += f" frequent {min(limit, len(total))} of {len(total)} kinds, numbers shown as N:"
    return [*out, "", *pipe_table(["", *FRONTS], body)]


def _fault_lines(faults: list[Fault], per_class: int = 2) -> list[str]:
    out = ["### Faults", "", f"{len(faults)} injected; the first {per_class} of each class:", ""]
    for cls in [*CLASSES, DROP]:
        out += [f"    {fault.line()}" for fault in [f for f in faults if f.cls == cls][:per_class]]
    return out


def _resources(findings: Findings) -> list[str]:
    header = ["gateway", "RSS start", "RSS end", "RSS max", "fds start", "fds end", "fds max"]
    header.append("CPU")
    body, series = [], []
    for front in FRONTS:
        start, end = findings.snapshots[front]
        samples = findings.usage[front]
        if start is None or end is None or not samples:
            body.append([front, *["n/a"] * 7])
            continue
        cpu = end.cpu_s - start.cpu_s
        share = cpu / max(end.at - start.at, 1e-9)
        body.append(
            [
                front,
                f"{start.rss_mib:.1f} MiB",
                f"{end.rss_mib:.1f} MiB",
                f"{max(s.rss_mib for s in samples):.1f} MiB",
                str(start.fds),
                str(end.fds),
                str(max(s.fds for s in samples)),
                f"{cpu:.0f} s ({share:.0%} of a core)",
            ]
        )
        series.append(f"- {front}: " + _series(samples, start.at, end.at))
    notes = [
        "",
        "Start: after the warm-up, before the first fault; end: when the calls stop. CPU: the"
        " gateway process's user + system time between the two.",
        "RSS and fds at eight even points of the measured time:",
        "",
        *series,
    ]
    return ["### Gateways: memory, fds, CPU", "", *pipe_table(header, body), *notes]


def _series(samples: list[Usage], start: float, end: float) -> str:
    points = []
    for index in range(8):
        at = start + (end - start) * index / 7
        nearest = min(samples, key=lambda s: abs(s.at - at))
        points.append(f"{nearest.rss_mib:.0f} MiB/{nearest.fds}")
    return ", ".join(points)


def criteria(findings: Findings) -> list[tuple[bool, str]]:
    """Each criterion of the verdict: whether it holds, and what was found."""
    lost = sum(j.lost for j in findings.judged)
    idem = sum(j.call.kind.idempotent for j in findings.judged)
    found = [(lost == 0, f"idempotent calls lost: {lost} of {idem}")]
    for front in FRONTS:
        found.append(_flat(front, *findings.snapshots[front]))
    for front in FRONTS:
        left = findings.left.get(front, [])
        seen = findings.seen.get(front, 0)
        what = f"{len(left)}" + (f": {'; '.join(left)[:300]}" if left else "")
        found.append((not left, f"processes left by the {front} gateway: {what} (of {seen} seen)"))
    swept = findings.swept
    found.append((swept == 0, f"processes running below the soak after it stopped all: {swept}"))
    twice = findings.duplicates.get("write", 0)
    found.append((twice == 0, f"non-idempotent calls executed twice: {twice}"))
    found += [(False, what) for what in findings.died]
    return found


def _flat(front: str, start: Usage | None, end: Usage | None) -> tuple[bool, str]:
    if start is None or end is None:
        return False, f"{front} gateway: no start or end reading"
    grew = end.rss_mib - start.rss_mib
    rss = grew <= RSS_FLAT * start.rss_mib
    fds = end.fds - start.fds <= FDS_FLAT
    return rss and fds, (
        f"{front} gateway: RSS {'flat' if rss else 'grew'} ({start.rss_mib:.1f} →"
        f" {end.rss_mib:.1f} MiB, {grew:+.1f}), fds {'flat' if fds else 'grew'}"
        f" ({start.fds} → {end.fds})"
    )


def _verdict(findings: Findings) -> list[str]:
    lines = [f"- {'met' if ok else '**not met**'}: {what}" for ok, what in criteria(findings)]
    unexplained = sum(not j.call.ok and not j.disturbed for j in findings.judged)
    lines.append(f"- (for information) calls failed with no backend fault: {unexplained}")
    return lines


def summary(findings: Findings) -> str:
    """The findings as Markdown: the same text for stdout and for docs/soak.md."""
    warm_failed = sum(not call.ok for call in findings.warmup)
    duplicates = findings.duplicates
    notes = [
        "",
        f"- Warm-up (not counted above): {len(findings.warmup)} calls, {warm_failed} failed.",
        f"- Executed more than once by the faulty backends: {duplicates.get('write', 0)}"
        f" `write` calls (not idempotent: must be 0), {duplicates.get('read', 0)} `read` calls"
        " (idempotent: retried after the request was sent).",
    ]
    parts = [
        ["### Verdict", "", *_verdict(findings)],
        _by_kind(findings.judged),
        _by_tool(findings.judged),
        [*_by_fault(findings.judged, findings.faults), *notes],
        _lost(findings.judged),
        _resources(findings),
        _errors(findings.judged),
        _logs(findings.logs),
        _fault_lines(findings.faults),
    ]
    return "\n\n".join("\n".join(part) for part in parts if part)
