"""What the real `mcp-agg` says about itself: every `--help` whole, and `--version`."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.core import TyperCommand, TyperGroup

from mcp_agg import __version__
from mcp_agg.cli.commands import app
from tests.e2e.procs import mcp_agg

pytestmark = pytest.mark.e2e

#: `[gateway.auth]`, `[[servers]]`, `[default: ...]`: what a markup parser would take for
#: a style tag and drop.
BRACKETED = re.compile(r"\[\[?[^\[\]]+\]\]?")

_APP = typer.main.get_command(app)
assert isinstance(_APP, TyperGroup)
#: The app's help and every command's: the arguments that show it, and the command.
HELPS: list[tuple[tuple[str, ...], TyperGroup | TyperCommand]] = [
    ((), _APP),
    *(((name,), command) for name, command in _APP.commands.items()),
]


def bracketed_terms(command: TyperGroup | TyperCommand) -> list[str]:
    """The bracketed terms in a command's help string and its parameters' help strings."""
    texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
    return [term for text in texts for term in BRACKETED.findall(text)]


def _squeezed(text: str) -> str:
    """Without whitespace or panel borders: a term wrapped over two lines still matches."""
    return re.sub(r"[\s│]", "", text)


@pytest.mark.parametrize(
    ("args", "command"), HELPS, ids=[" ".join(args) or "mcp-agg" for args, _ in HELPS]
)
def test_help_shows_every_bracketed_term(
    args: tuple[str, ...], command: TyperGroup | TyperCommand
) -> None:
    done = mcp_agg(*args, "--help")
    assert done.returncode == 0, done.stderr
    shown = _squeezed(done.stdout)
    missing = [term for term in bracketed_terms(command) if _squeezed(term) not in shown]
    assert not missing, f"`mcp-agg {' '.join(args)} --help` lost {missing}:\n{done.stdout}"


def test_the_help_strings_have_bracketed_terms_to_check() -> None:
    # Else the test above would pass without checking anything.
    terms = {term for _, command in HELPS for term in bracketed_terms(command)}
    assert {"[gateway.auth]", "[profiles.NAME]"} <= terms


def test_the_app_help_lists_each_command_with_its_whole_summary() -> None:
    done = mcp_agg("--help")
    assert done.returncode == 0, done.stderr
    shown = _squeezed(done.stdout)
    for name, command in _APP.commands.items():
        summary = (command.help or "").split("\n\n")[0]
        assert _squeezed(summary) in shown, f"{name}: {summary!r} not whole in\n{done.stdout}"


def test_version_prints_the_gateways_version() -> None:
    done = mcp_agg("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"mcp-agg {__version__}"
