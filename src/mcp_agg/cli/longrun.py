"""A command's long run, started once its command line is parsed and gone.

`serve` lives as long as its process. typer, and the command modules typer builds the
command line from, would live on with it (about 1.2 MB of objects: docs/benchmarks.md,
"Issue 17, sixth round"), though nothing needs them once the arguments are read. So
`serve` parses, checks and starts what must start at once inside the command line, then
hands the rest to `hand_over`; `run_command_line` lets typer finish, drops the command
line's modules, and runs it.

The modules the long run uses (`serving`, `runner`, `logs`, `output` and this one)
import no typer.
"""

from __future__ import annotations

import gc
import sys
import typing
from collections.abc import Callable

__all__ = ["hand_over", "run_command_line"]

#: The command line's libraries: typer and what it alone brings (click is typer's own
#: copy, `typer._click`; difflib makes its "did you mean").
_LIBRARIES = ("typer", "shellingham", "annotated_doc", "difflib")

#: The command line's modules that the long run needs: none of them imports typer.
_KEPT = frozenset(
    f"mcp_agg.cli{name}" for name in ("", ".longrun", ".logs", ".output", ".runner", ".serving")
)

_long_run: Callable[[], None] | None = None


def hand_over(long_run: Callable[[], None]) -> None:
    """Have `long_run` run once the command line is gone (it must not refer to typer or
    a command module)."""
    global _long_run
    _long_run = long_run


def run_command_line() -> None:
    """Run the command line, then the long run a command handed over, if any, without
    the command line."""
    long_run = _parse_and_check()
    if long_run is not None:
        _drop_command_line()
        long_run()


def _parse_and_check() -> Callable[[], None] | None:
    """Run the command; what it handed over, if it ended well and handed something."""
    global _long_run
    from typer.main import get_command

    from mcp_agg.cli.commands import app

    # The click command, not `app()`: that would install typer's `sys.excepthook`, and
    # every thread started meanwhile would keep it (threading copies the hook), and with
    # it all of typer. The app turns typer's pretty tracebacks off anyway.
    command = get_command(app)
    try:
        command()  # standalone: it ends by raising SystemExit, 0 when it went well
    except SystemExit as done:
        long_run, _long_run = _long_run, None
        if long_run is None or done.code not in (0, None):
            raise
        return long_run
    return None  # pragma: no cover - click's standalone mode always exits


def _drop_command_line() -> None:
    """Forget typer and the command modules, so that their objects are freed: nothing
    refers to them once typer has returned and the caller has let go of the app."""
    for name in list(sys.modules):
        if name.split(".")[0] in _LIBRARIES or (
            name.startswith("mcp_agg.cli.") and name not in _KEPT
        ):
            module = sys.modules.pop(name)
            parent, _, child = name.rpartition(".")
            if getattr(sys.modules.get(parent), child, None) is module:
                delattr(sys.modules[parent], child)
    # typing keeps every `@overload` for `typing.get_overloads` (nothing in the gateway
    # asks for them), typer's copy of click's among them, and with them its modules.
    typing.clear_overloads()
    # typing also caches the aliases it makes (`Annotated[..., typer.Option(...)]` in the
    # commands' signatures, and in typer's own), and with them typer's classes. There is
    # no public way to empty those caches: this is the one `typing` keeps for it, and the
    # test of this module fails if it ever stops working.
    for clear in getattr(typing, "_cleanups", ()):
        clear()
    gc.collect()
