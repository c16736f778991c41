"""One string of a client's config as the gateway's config holds it.

The clients each expand their own variables: Claude Code `${VAR}` and `${VAR:-default}`
(the gateway's own syntax, kept as written), VS Code and Cursor `${env:VAR}`,
`${input:ID}` (VS Code asks the user) and predefined ones such as `${workspaceFolder}`.
Every other `$` is literal to them, while the gateway would expand it, so it is doubled:
the backend gets the value the client would have passed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mcp_agg.config.mcpservers.needs import Needs, Variable, env_name, is_name, names_for
from mcp_agg.config.mcpservers.secrets import Span
from mcp_agg.errors import ConfigError

__all__ = ["Folders", "Input", "Rewriter"]

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DOLLAR = re.compile(r"\$\{([^}]*)\}|\$")
_REFERENCE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<default>:-.*)?", re.DOTALL)
_PREFIXED = re.compile(r"(?P<kind>[A-Za-z]+):(?P<arg>.*)", re.DOTALL)


@dataclass(frozen=True)
class Input:
    """A VS Code `inputs` entry: VS Code prompts for it; the gateway reads the environment."""

    id: str
    description: str = ""
    password: bool = False
    default: str | None = None


@dataclass(frozen=True)
class Folders:
    """The folders of VS Code's and Cursor's predefined variables, known at import time.

    They become literal paths rather than variables: the person importing is on the
    machine where the file is, and a path needs nothing set before the gateway starts.
    """

    workspace: Path
    home: Path

    @classmethod
    def of(cls, source: Path) -> Folders:
        """The workspace of `.vscode/mcp.json` or `.cursor/mcp.json` is the folder holding
        `.vscode` or `.cursor`; of any other file, the file's own folder."""
        folder = source.resolve().parent
        if folder.name in (".vscode", ".cursor"):
            folder = folder.parent
        return cls(folder, Path.home())

    def value(self, name: str) -> str | None:
        """The value of the predefined variable `name`; None if it is not one."""
        values = {
            "workspaceFolder": str(self.workspace),
            "workspaceFolderBasename": self.workspace.name,
            "userHome": str(self.home),
            "pathSeparator": os.sep,
            "/": os.sep,
        }
        return values.get(name)

    def path(self, text: str) -> Path | None:
        """`text` as a path, its predefined variables replaced and relative to the
        workspace; None if it uses another variable, which has no value at import time."""
        parts = _VARIABLE.split(text)  # literal, name, literal, ..., literal
        for index in range(1, len(parts), 2):
            value = self.value(parts[index])
            if value is None:
                return None
            parts[index] = value
        return self.workspace / "".join(parts)


class Rewriter:
    """Rewrites the strings of one file, collecting the variables they need."""

    def __init__(
        self, needs: Needs, inputs: Mapping[str, Input], folders: Folders, source: Path
    ) -> None:
        self.needs = needs
        self.folders = folders
        self.source = source
        self._inputs = inputs

    def __call__(self, text: str, loc: str, server: str, secrets: Sequence[Span] = ()) -> str:
        """`text`, found at `loc` in `server`, in the gateway's syntax: the same value once
        expanded, with each credential in `secrets` moved out to a variable of its own."""
        parts: list[str] = []
        position = 0
        for span in secrets:
            parts.append(self._plain(text[position : span.start], loc))
            parts.append(self._secret(text[span.start : span.end], span.key, loc, server))
            position = span.end
        parts.append(self._plain(text[position:], loc))
        return "".join(parts)

    def _secret(self, value: str, key: str, loc: str, server: str) -> str:
        name = self.needs.name(("secret", loc, key), names_for(server, key))
        why = f"secret: the value at {loc} in {self.source.name}"
        self.needs.add(Variable(name, why, secret=True, value=value))
        return "${" + name + "}"

    def _plain(self, text: str, loc: str) -> str:
        return _DOLLAR.sub(lambda match: self._variable(match, loc), text)

    def _variable(self, match: re.Match[str], loc: str) -> str:
        inner = match.group(1)
        if inner is None:
            return "$$"  # a lone `$`: literal to every client
        predefined = self.folders.value(inner)
        if predefined is not None:
            return predefined.replace("$", "$$")
        reference = _REFERENCE.fullmatch(inner)
        if reference is not None:
            if reference["default"] is None:
                self.needs.reference(reference["name"], loc)
            return match.group(0)
        prefixed = _PREFIXED.fullmatch(inner)
        if prefixed is None:
            return "$" + match.group(0)  # `${` that names no variable: literal
        if prefixed["kind"] == "env" and is_name(prefixed["arg"]):
            self.needs.reference(prefixed["arg"], loc)
            return "${" + prefixed["arg"] + "}"
        if prefixed["kind"] == "input":
            return self._input(prefixed["arg"], loc)
        raise ConfigError(
            f"cannot translate ${{{inner}}}: outside the client, only ${{env:NAME}},"
            " ${input:ID}, ${workspaceFolder}, ${workspaceFolderBasename}, ${userHome}"
            " and ${pathSeparator} have a meaning",
            source=self.source,
            loc=loc,
        )

    def _input(self, input_id: str, loc: str) -> str:
        """`${input:ID}`: one variable per input, with the input's default if it has one."""
        spec = self._inputs.get(input_id, Input(input_id))
        name = self.needs.name(
            ("input", input_id), (env_name(input_id), env_name("input", input_id))
        )
        if spec.default is not None and not spec.password and "}" not in spec.default:
            return "${" + name + ":-" + spec.default + "}"
        why = f'VS Code input "{input_id}"' + (f": {spec.description}" if spec.description else "")
        why += " (a password)" if spec.password else ""
        self.needs.add(Variable(name, why, secret=spec.password))
        return "${" + name + "}"
