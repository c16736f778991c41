"""Tests for the servers registered through the admin API, kept the same on every
replica through the store (mcp_agg.core.registry)."""

from __future__ import annotations

import json
import logging

import pytest

from mcp_agg.config import ServerConfig
from mcp_agg.core.registry import SharedRegistrations, entry_json
from mcp_agg.errors import StoreUnavailable
from mcp_agg.store import MemoryStore, Registration

UNITS = {"name": "shared", "command": "python", "args": ["units.py"]}


class FakeServers:
    """The reconfigurer, as far as registrations go: what it was asked to do."""

    def __init__(self, file_names: frozenset[str] = frozenset()) -> None:
        self.file_names = set(file_names)
        self.registered: dict[str, tuple[ServerConfig, ...]] = {}
        self.done: list[str] = []

    def config_names(self) -> set[str]:
        return self.file_names | set(self.registered)

    async def register(self, server: ServerConfig) -> None:
        self.registered[server.name] = (server,)
        self.done.append(f"register {server.name}")

    async def unregister(self, name: str) -> None:
        del self.registered[name]
        self.done.append(f"unregister {name}")


def shared(servers: FakeServers, store: MemoryStore | None = None) -> SharedRegistrations:
    return SharedRegistrations(MemoryStore() if store is None else store, servers)  # type: ignore[arg-type]


async def test_a_change_is_applied_once() -> None:
    servers = FakeServers()
    registry = shared(servers)
    entry = entry_json(UNITS)
    await registry.apply(Registration("shared", entry))
    await registry.apply(Registration("shared", entry))  # the echo of its own write
    assert servers.done == ["register shared"]
    assert servers.registered["shared"] == (ServerConfig.model_validate(UNITS),)
    await registry.apply(Registration("shared", None))
    await registry.apply(Registration("shared", None))
    assert servers.done == ["register shared", "unregister shared"]


async def test_a_changed_entry_replaces_the_running_one() -> None:
    servers = FakeServers()
    registry = shared(servers)
    await registry.apply(Registration("shared", entry_json(UNITS)))
    changed = {**UNITS, "args": ["units.py", "--verbose"]}
    await registry.apply(Registration("shared", entry_json(changed)))
    assert servers.done == ["register shared", "unregister shared", "register shared"]
    assert servers.registered["shared"] == (ServerConfig.model_validate(changed),)


@pytest.mark.parametrize(
    ("entry", "file_names", "warning"),
    [
        (
            entry_json(UNITS),
            {"shared"},
            "registered server 'shared' skipped on this replica: its config file defines it",
        ),
        (
            json.dumps({"name": "shared", "command": 3}),
            set(),
            "registered server 'shared' in the store is not valid: skipped",
        ),
    ],
)
async def test_what_this_replica_cannot_run_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture, entry: str, file_names: set[str], warning: str
) -> None:
    servers = FakeServers(frozenset(file_names))
    await shared(servers).apply(Registration("shared", entry))
    assert servers.done == []
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [warning]


async def test_load_runs_what_the_store_has() -> None:
    store = MemoryStore()
    await store.put_registration("shared", entry_json(UNITS))
    servers = FakeServers()
    await shared(servers, store).load()
    assert servers.done == ["register shared"]


async def test_load_without_the_store_starts_with_none(caplog: pytest.LogCaptureFixture) -> None:
    class Down(MemoryStore):
        async def registrations(self) -> dict[str, str]:
            raise StoreUnavailable("store redis://r:6379/0 unreachable: refused")

    servers = FakeServers()
    await shared(servers, Down()).load()
    assert servers.done == []
    assert "servers registered through the admin API not loaded: store redis" in caplog.text
