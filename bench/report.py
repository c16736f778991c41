"""Result tables and the facts about the machine that make them comparable.

The same Markdown text goes to stdout and, with --markdown, into a file: what a reader
sees in docs/benchmarks.md is exactly what the run printed.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BEGIN",
    "END",
    "Row",
    "Table",
    "machine_info",
    "pipe_table",
    "source_state",
    "write_markdown",
]

REPO = Path(__file__).resolve().parents[1]
#: The part of a Markdown file that --markdown rewrites; the text around it is kept.
BEGIN = "<!-- bench:results:begin (written by bench/run.py; edits inside are overwritten) -->"
END = "<!-- bench:results:end -->"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def per_second(rate: float) -> str:
    return f"{rate:.0f} calls/s" if rate >= 10 else f"{rate:.2f} calls/s"


def ratio(value: float) -> str:
    """Two decimals, or two significant digits for a ratio far below 1."""
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def mib(value: float) -> str:
    return f"{value:.1f} MiB"


@dataclass(slots=True)
class Row:
    """One measured figure for every path; a path without a value prints n/a."""

    label: str
    fmt: Callable[[float], str]
    values: dict[str, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    #: The path whose figure each ratio divides by; None prints no ratios.
    ref: str | None = "direct"
    #: A reference figure from another row (e.g. direct's 1-session throughput).
    ref_value: float | None = None

    def seen_from(self, ref: str, ref_value: float | None = None) -> Row:
        """The same figures (shared, not copied) with ratios to another path: one row in
        two tables, e.g. mcp-agg http against direct stdio and against direct http."""
        return Row(self.label, self.fmt, self.values, self.failed, ref, ref_value)

    def cell(self, path: str) -> str:
        if path in self.failed:
            return "failed"
        value = self.values.get(path)
        if value is None:
            return "n/a"
        ref = self.ref_value if self.ref_value is not None else self.values.get(self.ref or "")
        if self.ref is None or not ref:
            return self.fmt(value)
        return f"{self.fmt(value)} ({ratio(value / ref)})"


@dataclass(slots=True)
class Table:
    title: str
    columns: dict[str, str]  # path key → header
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        header = ["", *self.columns.values()]
        body = [[row.label, *(row.cell(path) for path in self.columns)] for row in self.rows]
        out = [f"### {self.title}", "", *pipe_table(header, body)]
        if self.notes:
            out += ["", *self.notes]
        return "\n".join(out)


def pipe_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """An aligned pipe table, first column left and the others right: readable as
    printed, and as rendered Markdown."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "| " + " | ".join([first, *rest]) + " |"

    rule = "|" + "|".join(
        "-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return [line(header), rule + "|", *map(line, body)]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _run_git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def source_state() -> tuple[str, str]:
    """(what to print, what to compare): the commit and the state of the gateway's source."""
    try:
        commit = _run_git("rev-parse", "--short", "HEAD")
        tree = _run_git("rev-parse", "HEAD:src")
        dirty = _run_git("status", "--porcelain", "--", "src")
        bench_dirty = _run_git("status", "--porcelain", "--", "bench")
    except (OSError, subprocess.SubprocessError):
        return "unknown commit", ""
    changed = [name for name, diff in (("src/", dirty), ("bench/", bench_dirty)) if diff]
    label = f"git {commit}" + (
        f"+dirty (uncommitted changes in {', '.join(changed)})" * bool(changed)
    )
    return label, f"{tree}\n{dirty}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(
    mode: str,
    command: str,
    took: float,
    started: datetime.datetime,
    source: str,
    magg: Path | None = None,
) -> str:
    """Markdown bullets: when, where and with what the figures were measured; `magg`:
    its program, whose own interpreter and packages are asked for theirs."""
    now = started.strftime("%Y-%m-%d %H:%M UTC")
    items = [
        ("Run", f"{mode} (`{command}`), {now}, {took:.0f} s wall time"),
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores; memory {_memory()}"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        (
            "Packages",
            f"fastmcp {_version('fastmcp')}, mcp {_version('mcp')}, "
            f"uvicorn {_version('uvicorn')}, pydantic {_version('pydantic')}, "
            f"mcp-agg {_version('mcp-agg')} ({source})",
        ),
    ]
    if magg is not None:
        items.append(("magg", _magg_versions(magg)))
    return "\n".join(f"- **{key}**: {value}" for key, value in items)


def _magg_versions(magg: Path) -> str:
    """magg's version, its fastmcp's and mcp's, and its interpreter's, from its own venv."""
    probe = (
        "import importlib.metadata as m, platform; "
        "print(f\"magg {m.version('magg')}, fastmcp {m.version('fastmcp')}, "
        "mcp {m.version('mcp')}, on Python {platform.python_version()}\")"
    )
    try:
        done = subprocess.run(
            [str(magg.parent / "python"), "-c", probe],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{magg} (versions unknown: {exc})"
    return done.stdout.strip()


def write_markdown(
    path: Path,
    block: str,
    *,
    markers: tuple[str, str] = (BEGIN, END),
    title: str = "mcp-agg benchmarks",
) -> None:
    """Put `block` between the markers in `path`, keeping the rest; a new file gets just it
    under `title`."""
    begin, end = markers
    region = f"{begin}\n{block}\n{end}"
    if path.exists():
        text = path.read_text()
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            tail = rest.split(end, 1)[1]
            path.write_text(f"{head}{region}{tail}")
            return
        if text.strip():
            path.write_text(f"{text.rstrip()}\n\n{region}\n")
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n{region}\n")
