"""Balancing strategies: which replica of a group takes the next call.

Every strategy picks among the candidates it is given: replicas that are connected,
healthy and admitted by their breaker, less those this call already tried.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

__all__ = [
    "Balancer",
    "LeastConnections",
    "LoadView",
    "P2CPeakEwma",
    "PeakEwma",
    "RandomChoice",
    "RoundRobin",
    "SmoothWeighted",
    "make_balancer",
]


class LoadView(Protocol):
    """What a strategy may know about a replica."""

    @property
    def id(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def latency(self) -> float:
        """Peak-EWMA latency in seconds (0 while unknown)."""
        ...


_R = TypeVar("_R", bound=LoadView)


class Balancer(Protocol):
    def pick(self, candidates: Sequence[_R]) -> _R: ...


class RoundRobin:
    def __init__(self) -> None:
        self._turn = itertools.count()

    def pick(self, candidates: Sequence[_R]) -> _R:
        return candidates[next(self._turn) % len(candidates)]


class RandomChoice:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[_R]) -> _R:
        return self._rng.choice(candidates)


class LeastConnections:
    """Fewest calls in flight; ties go round-robin so idle replicas share the load."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    def pick(self, candidates: Sequence[_R]) -> _R:
        fewest = min(c.in_flight for c in candidates)
        idle = [c for c in candidates if c.in_flight == fewest]
        return idle[next(self._turn) % len(idle)]


class SmoothWeighted:
    """Smooth weighted round robin (as nginx): by `weight`, without bursts to one replica."""

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, candidates: Sequence[_R]) -> _R:
        total = 0.0
        best: _R | None = None
        for candidate in candidates:
            current = self._current.get(candidate.id, 0.0) + candidate.weight
            self._current[candidate.id] = current
            total += candidate.weight
            if best is None or current > self._current[best.id]:
                best = candidate
        assert best is not None
        self._current[best.id] -= total
        return best


class P2CPeakEwma:
    """Power of two choices on peak-EWMA latency x (in flight + 1), as Finagle and Linkerd.

    Two random candidates, the cheaper one wins: load follows measured latency, and a
    replica that turns slow loses traffic at once (the peak jumps up, then decays).
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[_R]) -> _R:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(list(candidates), 2)
        # A replica with no latency measured yet is taken to be as slow as the slowest
        # measured one, so its load still counts and it is not flooded while it warms up.
        unknown = max((c.latency for c in candidates), default=0.0) or _UNKNOWN_LATENCY
        return a if _cost(a, unknown) <= _cost(b, unknown) else b


#: Latency assumed (seconds) when no candidate has been measured yet.
_UNKNOWN_LATENCY = 0.001


def _cost(replica: LoadView, unknown: float) -> float:
    return (replica.latency or unknown) * (replica.in_flight + 1)


class PeakEwma:
    """Latency estimate that takes a slower sample at once and decays toward faster ones."""

    def __init__(self, decay: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.decay = decay
        self.value = 0.0
        self._clock = clock
        self._stamp = clock()

    def observe(self, seconds: float) -> None:
        now = self._clock()
        elapsed = max(now - self._stamp, 0.0)
        self._stamp = now
        if seconds > self.value:
            self.value = seconds
        else:
            keep = math.exp(-elapsed / self.decay)
            self.value = self.value * keep + seconds * (1.0 - keep)


def make_balancer(name: str) -> Balancer:
    factories: dict[str, Callable[[], Balancer]] = {
        "round-robin": RoundRobin,
        "least-connections": LeastConnections,
        "weighted": SmoothWeighted,
        "random": RandomChoice,
        "p2c-ewma": P2CPeakEwma,
    }
    return factories[name]()
