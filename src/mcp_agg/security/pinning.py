"""Tool pinning: a tool whose definition changed since it was approved is reported or withheld.

`mcp-agg lock` writes the lock file: per exposed tool, the sha256 of the canonical JSON
of what a model reads (name, description, input schema, annotations), a hash of each of
those parts (to say what changed) and, for humans, the server and original name and the
parts themselves (`definition`: what a changed tool is diffed against, by the web console). The
gateway compares every catalog it builds against it (`apply`), never on the call path:
`warn` reports changed and new tools, `enforce` also withholds them from the catalog
until the lock is updated; `off` does nothing.

New tools are withheld in `enforce` mode too: a tool nobody approved is exactly what
pinning is for. A tool in the lock that no backend offers now is only reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mcp_types

from mcp_agg.errors import ConfigError

if TYPE_CHECKING:
    from mcp_agg.components.forwarding import ForwardingTool
    from mcp_agg.core.catalog import Catalog

__all__ = [
    "LOCK_VERSION",
    "LockEntry",
    "LockFile",
    "PinReport",
    "Pinner",
    "compare",
    "entry_for",
    "lock_catalog",
    "parts_of",
    "read_lock",
    "write_lock",
]

logger = logging.getLogger(__name__)

LOCK_VERSION = 1
PinMode = Literal["off", "warn", "enforce"]
#: The parts of a definition that are hashed, as the lock file and reports name them.
PARTS = ("description", "input_schema", "annotations")
_PART_LABELS = {
    "description": "description",
    "input_schema": "schema",
    "annotations": "annotations",
}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One pinned tool."""

    sha256: str
    parts: Mapping[str, str]
    server: str = ""
    original_name: str = ""
    #: The pinned parts as canonical JSON; "" in a lock written before it was kept.
    definition: str = ""

    def parts_pinned(self) -> dict[str, Any] | None:
        """The pinned description, input schema and annotations; None if not kept."""
        if not self.definition:
            return None
        value = json.loads(self.definition)
        return value if isinstance(value, dict) else None


def parts_of(definition: mcp_types.Tool) -> dict[str, Any]:
    """What a tool's pin covers besides its name: description, input schema, annotations."""
    annotations = (
        definition.annotations.model_dump(by_alias=True, exclude_none=True, mode="json")
        if definition.annotations is not None
        else None
    )
    return {
        "description": definition.description,
        "input_schema": definition.input_schema,
        "annotations": annotations or None,
    }


def entry_for(
    exposed: str, definition: mcp_types.Tool, *, server: str = "", original_name: str = ""
) -> LockEntry:
    """The lock entry of a tool as it is exposed (under `exposed`)."""
    parts = parts_of(definition)
    digest = _sha256({"name": exposed, **parts})
    return LockEntry(
        sha256=digest,
        parts={key: _sha256(value) for key, value in parts.items()},
        server=server,
        original_name=original_name,
        definition=_canonical(parts),
    )


@dataclass(frozen=True, slots=True)
class LockFile:
    tools: Mapping[str, LockEntry] = field(default_factory=dict)


def write_lock(path: Path, lock: LockFile) -> None:
    """Write the lock as TOML, one table per tool in name order (diff-friendly)."""
    import tomli_w  # only `lock` writes one; `serve` reads it

    document: dict[str, Any] = {"version": LOCK_VERSION, "tools": {}}
    for name in sorted(lock.tools):
        entry = lock.tools[name]
        document["tools"][name] = {
            "server": entry.server,
            "original_name": entry.original_name,
            "sha256": entry.sha256,
            **{f"{part}_sha256": entry.parts[part] for part in PARTS if part in entry.parts},
            **({"definition": entry.definition} if entry.definition else {}),
        }
    header = (
        "# Tool pins written by `mcp-agg lock`: review changes before committing them.\n"
        "# sha256 covers the exposed name, description, input schema and annotations.\n\n"
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(header + tomli_w.dumps(document), encoding="utf-8")
    tmp.replace(path)


def read_lock(path: Path) -> LockFile | None:
    """The lock file, None when there is none; a broken one is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=path) from exc
    if document.get("version") != LOCK_VERSION:
        raise ConfigError(f"unsupported lock version {document.get('version')!r}", source=path)
    tools: dict[str, LockEntry] = {}
    table = document.get("tools", {})
    if not isinstance(table, dict):
        raise ConfigError("`tools` must be a table", source=path)
    for name, raw in table.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("sha256"), str):
            raise ConfigError("needs a `sha256` string", source=path, loc=f"tools.{name}")
        tools[name] = LockEntry(
            sha256=raw["sha256"],
            parts={
                part: raw[f"{part}_sha256"]
                for part in PARTS
                if isinstance(raw.get(f"{part}_sha256"), str)
            },
            server=str(raw.get("server", "")),
            original_name=str(raw.get("original_name", "")),
            definition=raw["definition"] if isinstance(raw.get("definition"), str) else "",
        )
    return LockFile(tools)


@dataclass(frozen=True, slots=True)
class PinReport:
    """How a catalog compares to the lock."""

    #: Exposed name -> the parts that differ ("description", "schema", "annotations").
    changed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    new: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()

    def status(self, name: str) -> str:
        if name in self.changed:
            return "changed"
        if name in self.new:
            return "new"
        return "ok"


def compare(current: Mapping[str, LockEntry], lock: LockFile) -> PinReport:
    """Changed, new and removed tools of `current` against `lock`."""
    changed: dict[str, tuple[str, ...]] = {}
    new: set[str] = set()
    for name, entry in current.items():
        pinned = lock.tools.get(name)
        if pinned is None:
            new.add(name)
        elif pinned.sha256 != entry.sha256:
            parts = tuple(
                _PART_LABELS[part]
                for part in PARTS
                if pinned.parts.get(part) != entry.parts.get(part)
            )
            changed[name] = parts or ("name",)
    removed = frozenset(set(lock.tools) - set(current))
    return PinReport(changed, frozenset(new), removed)


def entries_of(catalog: Catalog) -> dict[str, LockEntry]:
    return {
        name: entry_for(name, tool.definition, server=tool.group.name, original_name=tool.original)
        for name, tool in catalog.tools.items()
    }


class Pinner:
    """Applies the lock to every catalog the gateway builds, and reports once per change.

    The lock file is read at startup and again whenever its modification time changes
    (a refresh after `mcp-agg lock` picks it up).
    """

    def __init__(self, mode: PinMode, path: Path) -> None:
        self.mode = mode
        self.path = path
        self.lock: LockFile | None = None
        self.report = PinReport()
        #: Tools left out of the catalog by `enforce`, by exposed name.
        self.withheld: dict[str, ForwardingTool] = {}
        self._stamp: float | None = None
        self._reported: dict[str, tuple[str, ...]] = {}
        self._said_no_lock = False

    def load(self) -> None:
        """Read the lock file (at startup: a broken one is a ConfigError)."""
        if self.mode == "off":
            return
        self._stamp = _mtime(self.path)
        self.lock = read_lock(self.path)

    def _reload_if_changed(self) -> None:
        stamp = _mtime(self.path)
        if stamp == self._stamp:
            return
        try:
            self.lock = read_lock(self.path)
        except ConfigError as exc:
            logger.error("tool pinning: %s; keeping the lock read before", exc)
            return
        self._stamp = stamp
        self._reported.clear()
        logger.info("tool pinning: lock file %s reloaded", self.path)

    def apply(self, catalog: Catalog, *, reload: bool = False) -> Catalog:
        """The catalog clients may see, with changes and new tools reported."""
        if self.mode == "off":
            return catalog
        if reload:
            self._reload_if_changed()
        if self.lock is None:
            if not self._said_no_lock:
                self._said_no_lock = True
                logger.log(
                    logging.WARNING if self.mode == "enforce" else logging.INFO,
                    "tool pinning: no lock file %s, nothing to compare "
                    "(run `mcp-agg lock` to create it)",
                    self.path,
                )
            self.report, self.withheld = PinReport(), {}
            return catalog
        report = compare(entries_of(catalog), self.lock)
        self.report = report
        self._log(report)
        if self.mode != "enforce":
            self.withheld = {}
            return catalog
        held = set(report.changed) | report.new
        self.withheld = {name: catalog.tools[name] for name in sorted(held)}
        if not held:
            return catalog
        tools = {name: tool for name, tool in catalog.tools.items() if name not in held}
        return dataclasses.replace(catalog, tools=tools)

    def _log(self, report: PinReport) -> None:
        action = " (withheld until `mcp-agg lock`)" if self.mode == "enforce" else ""
        now: dict[str, tuple[str, ...]] = {
            **{name: ("new",) for name in report.new},
            **report.changed,
        }
        for name in sorted(now):
            if self._reported.get(name) == now[name]:
                continue
            if name in report.new:
                logger.warning("tool pinning: %s is new, not in the lock file%s", name, action)
            else:
                logger.warning(
                    "tool pinning: %s changed since it was locked: %s%s",
                    name,
                    ", ".join(now[name]),
                    action,
                )
        for name in sorted(set(self._reported) - set(now)):
            logger.info("tool pinning: %s matches the lock file again", name)
        self._reported = now


def lock_catalog(
    catalog: Catalog,
    withheld: Mapping[str, ForwardingTool],
    previous: LockFile | None,
    *,
    keep: Iterable[str] = (),
) -> LockFile:
    """A lock of every tool the gateway has (listed or withheld), plus the entries of
    the previous lock for the servers in `keep` (those not reachable now)."""
    tools = entries_of(catalog)
    for name, tool in withheld.items():
        tools[name] = entry_for(
            name, tool.definition, server=tool.group.name, original_name=tool.original
        )
    kept = set(keep)
    for name, entry in (previous.tools if previous is not None else {}).items():
        if entry.server in kept and name not in tools:
            tools[name] = entry
    return LockFile(tools)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None
