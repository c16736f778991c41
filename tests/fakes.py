"""Fakes shared by the unit tests."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that only moves when told to: call it for the time."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
