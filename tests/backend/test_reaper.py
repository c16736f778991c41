"""Tests for the gateway side of the reaper: which children it hands to the watchdog."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from mcp_agg.backend import reaper
from mcp_agg.backend.reaper import Reaper


class _Watchdog:
    """Stands for the watchdog process: what the gateway writes to its stdin."""

    pid = 1

    def __init__(self) -> None:
        self.stdin = io.BytesIO()
        self.stdin.close = lambda: None  # type: ignore[method-assign]

    def poll(self) -> None:
        return None

    def lines(self) -> list[str]:
        return self.stdin.getvalue().decode().splitlines()


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> dict[int, str]:
    """The gateway's child processes (pid -> start time), each a group leader."""
    found: dict[int, str] = {}
    monkeypatch.setattr(reaper, "_children", lambda pid: set(found))
    monkeypatch.setattr(reaper, "_start_time", lambda pid: found.get(pid))
    monkeypatch.setattr(os, "getpgid", lambda pid: pid)
    return found


def started(guard: Reaper) -> _Watchdog:
    watchdog = _Watchdog()
    guard._process = watchdog  # type: ignore[assignment]
    return watchdog


def test_children_started_later_are_guarded_once(children: dict[int, Any]) -> None:
    children[100] = "5"  # a child from before the gateway: never its backend
    guard = Reaper()
    guard._known = {100: "5"}
    watchdog = started(guard)
    children[200] = "7"
    guard.adopt_children()
    guard.adopt_children()
    assert watchdog.lines() == ["200 7"]


def test_a_new_backend_that_reuses_an_old_pid_is_guarded(children: dict[int, Any]) -> None:
    guard = Reaper()
    watchdog = started(guard)
    children[300] = "10"
    guard.adopt_children()
    del children[300]  # that backend was removed by a reload and reaped
    guard.adopt_children()
    children[300] = "99"  # a server added later got the same pid
    guard.adopt_children()
    assert watchdog.lines() == ["300 10", "300 99"]
