"""The environment variables a translated config needs, and the names given to new ones.

A value that cannot stay in the file (a secret in clear, a VS Code input, an envFile's
entry) becomes a `${NAME}` reference. The person who imports has to set each NAME, so the
names read like the ones they would have chosen (`GITHUB_TOKEN`, `BRAVE_API_KEY`), are
valid shell names, never clash with one another or with a name the file already uses, and
come out the same on every import of the same file.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Needs", "Variable", "env_name", "is_name", "names_for", "words"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHUNK = re.compile(r"[A-Za-z0-9]+")
# Inside a chunk, a word ends before a capital that follows a small letter or a digit
# (apiKey), or before the last capital of a run followed by a small letter (APIKey).
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class Variable:
    """A variable the translated config references without a default."""

    name: str
    #: where it comes from, for the person who sets it; never the value
    why: str
    secret: bool = False
    #: the value the JSON file itself gives (a secret moved out of it, an envFile's entry),
    #: which loading the JSON file directly uses; None when only the environment has it
    value: str | None = field(default=None, repr=False)


def is_name(text: str) -> bool:
    """Whether `text` is a variable name the gateway's `${NAME}` accepts."""
    return _NAME.fullmatch(text) is not None


def words(text: str) -> list[str]:
    """The words of a name, however it is written: `X-API-Key`, `apiKey`, `API_KEY`."""
    return [w for chunk in _CHUNK.findall(text) for w in _CAMEL.split(chunk)]


def env_name(*parts: str) -> str:
    """`GITHUB_API_KEY` from ("github", "apiKey"): the words in capitals joined by `_`."""
    name = "_".join(w.upper() for part in parts for w in words(part)) or "VALUE"
    return f"_{name}" if name[0].isdigit() else name


def names_for(server: str, key: str) -> tuple[str, ...]:
    """The names a value of `server` known as `key` may take, best first.

    The key alone when it already starts with the server's first word (`GITHUB_TOKEN` of
    the server `github`); else, or when that is taken, the server's name before it
    (`BRAVE_SEARCH_API_KEY`).
    """
    own, scoped = env_name(key), env_name(server, key)
    first = env_name(server).lstrip("_").split("_", 1)[0]
    return (own, scoped) if own.startswith(first + "_") else (scoped,)


class Needs:
    """Collects the variables while one file is translated, in order of first use."""

    def __init__(self, referenced: Iterable[str]) -> None:
        # The names the file references itself mean what they already mean: never reused.
        self._taken = set(referenced)
        self._given: dict[Hashable, str] = {}
        self._variables: dict[str, Variable] = {}

    @property
    def variables(self) -> tuple[Variable, ...]:
        return tuple(self._variables.values())

    def reference(self, name: str, where: str) -> None:
        """`${name}` as the file has it: the environment must have it."""
        self._variables.setdefault(name, Variable(name, f"referenced by {where}"))

    def name(self, identity: Hashable, candidates: Sequence[str]) -> str:
        """The name of a new variable: the same `identity` always gets the same one."""
        if identity in self._given:
            return self._given[identity]
        name = next((c for c in candidates if c not in self._taken), None)
        if name is None:
            base, n = candidates[-1], 2
            while f"{base}_{n}" in self._taken:
                n += 1
            name = f"{base}_{n}"
        self._taken.add(name)
        self._given[identity] = name
        return name

    def add(self, variable: Variable) -> None:
        """A variable the translated config needs set (the first mention stands)."""
        self._variables.setdefault(variable.name, variable)
