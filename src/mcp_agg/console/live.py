"""The live startup display (`serve --transport http` on a terminal): a spinner per
replica while it connects, its result when it has one, then the summary line.

Kept apart from `mcp_agg.console.startup` so that rich is imported only when a terminal shows it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from mcp_agg.console.startup import LogStartup, ReplicaOutcome, StartupSummary, Status

__all__ = ["LiveStartup"]


_MARKS: dict[Status, Text] = {
    "connected": Text("✓", style="green"),
    "failed": Text("✗", style="red"),
    "timed out": Text("⏱", style="yellow"),
}


class LiveStartup:
    """Startup as a live display on a terminal; ends with the summary line.

    While the display runs, log lines below WARNING are left out (the display says
    the same), and the others are printed above it rather than through it. Servers
    started later (a reload, a registration) are reported as log lines, as `LogStartup`
    reports them: the display is for the gateway's start only.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._began = time.monotonic()
        self._rows: dict[str, ReplicaOutcome | None] = {}
        self._spinner = Spinner("dots", style="cyan")
        self._live: Live | None = None
        self._logs = ExitStack()
        #: Once the start is over, what reports later servers.
        self._after: LogStartup | None = None

    # -------------------------------------------------------------- StartupObserver

    def starting(self, replicas: Sequence[str]) -> None:
        if self._after is not None:
            self._after.starting(replicas)
            return
        self._began = time.monotonic()
        self._rows = dict.fromkeys(replicas)
        self._live = Live(self, console=self.console, refresh_per_second=12)
        self._live.start()
        self._logs.enter_context(_logs_above(self.console))

    def replica_done(self, outcome: ReplicaOutcome) -> None:
        if self._after is not None:
            self._after.replica_done(outcome)
            return
        self._rows[outcome.replica] = outcome
        if self._live is not None:
            self._live.refresh()

    def ready(self, summary: StartupSummary) -> None:
        if self._after is not None:
            self._after.ready(summary)
            return
        self.close()
        style = "yellow" if summary.unavailable else "green"
        line = summary.describe(time.monotonic() - self._began)
        self.console.print(Text(f"mcp-agg {line}", style=style))

    # -------------------------------------------------------------- display

    def close(self) -> None:
        """Stop the display, if it runs (a startup that failed never gets `ready`)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._logs.close()
        self._after = LogStartup()

    def __rich__(self) -> RenderableType:
        table = Table.grid(padding=(0, 1))
        for replica, outcome in self._rows.items():
            if outcome is None:
                table.add_row(self._spinner, Text(replica, style="bold"), Text("connecting…"))
            else:
                detail = Text(
                    outcome.describe(), style="dim" if outcome.status == "connected" else ""
                )
                table.add_row(_MARKS[outcome.status], Text(replica, style="bold"), detail)
        return table


@contextmanager
def _logs_above(console: Console) -> Iterator[None]:
    """While a live display runs: log lines to stderr go through `console` (printed
    above the display), and only from WARNING up."""
    root = logging.getLogger()
    handlers = [
        h
        for h in root.handlers
        if isinstance(h, logging.StreamHandler) and h.stream is console.file
    ]
    through = _ConsoleStream(console)
    quiet = _AtLeast(logging.WARNING)
    for handler in handlers:
        handler.setStream(through)
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)
            handler.setStream(console.file)


class _AtLeast(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


class _ConsoleStream:
    """A text stream that prints whole lines through a rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self.console.print(Text(line), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass
