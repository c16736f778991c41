"""Health checks: eject a replica that stops answering, readmit it when it recovers.

The probe itself lives on the replica (`Upstream.probe`); this holds the policy and the
counting, so that one failed probe in a flapping network does not eject a replica and
one good probe does not readmit a sick one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HealthPolicy", "HealthState"]


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    interval: float
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2

    @property
    def timeout(self) -> float:
        """A probe gets at most the interval (and at most 5 s) to answer."""
        return min(self.interval, 5.0) if self.interval > 0 else 5.0


class HealthState:
    def __init__(
        self, policy: HealthPolicy, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self.healthy = True
        #: When the replica was ejected (on `clock`), while it is.
        self._ejected_at: float | None = None
        self.failures = 0  # consecutive
        self.successes = 0  # consecutive
        self.last_probe_at: float | None = None
        self.last_probe_ok: bool | None = None

    def reset(self) -> None:
        """A fresh connection starts healthy: connecting proved it answers."""
        self.healthy = True
        self._ejected_at = None
        self.failures = self.successes = 0

    def ejected_for(self) -> float:
        """Seconds since the replica was ejected; 0 while it is healthy."""
        return 0.0 if self._ejected_at is None else self._clock() - self._ejected_at

    def record(self, *, ok: bool) -> bool:
        """Count one probe; return whether the replica was ejected or readmitted."""
        self.last_probe_at = time.time()
        self.last_probe_ok = ok
        if ok:
            self.successes += 1
            self.failures = 0
            if not self.healthy and self.successes >= self.policy.healthy_threshold:
                self.healthy = True
                self._ejected_at = None
                return True
        else:
            self.failures += 1
            self.successes = 0
            if self.healthy and self.failures >= self.policy.unhealthy_threshold:
                self.healthy = False
                self._ejected_at = self._clock()
                return True
        return False
