"""Tests for mcp_agg.resilience.health: ejecting and readmitting by consecutive probes."""

from __future__ import annotations

import dataclasses

import pytest

from mcp_agg.resilience.health import HealthPolicy, HealthState
from tests.fakes import FakeClock


def state(unhealthy: int = 3, healthy: int = 2) -> HealthState:
    return HealthState(
        HealthPolicy(interval=10.0, unhealthy_threshold=unhealthy, healthy_threshold=healthy)
    )


def eject(health: HealthState) -> None:
    for _ in range(health.policy.unhealthy_threshold):
        health.record(ok=False)
    assert not health.healthy


# ---------------------------------------------------------------------------- HealthState


def test_starts_healthy() -> None:
    health = state()
    assert health.healthy
    assert health.failures == 0
    assert health.successes == 0
    assert health.last_probe_at is None
    assert health.last_probe_ok is None


def test_ejects_after_unhealthy_threshold_failures() -> None:
    health = state(unhealthy=3)
    assert health.record(ok=False) is False
    assert health.healthy
    assert health.record(ok=False) is False
    assert health.healthy
    assert health.record(ok=False) is True  # the transition
    assert not health.healthy
    assert health.failures == 3


def test_further_failures_do_not_report_a_change() -> None:
    health = state(unhealthy=3)
    eject(health)
    for _ in range(5):
        assert health.record(ok=False) is False
        assert not health.healthy


def test_success_resets_failure_count() -> None:
    health = state(unhealthy=3)
    for _ in range(5):
        assert health.record(ok=False) is False
        assert health.record(ok=False) is False
        assert health.record(ok=True) is False
        assert health.failures == 0
    assert health.healthy
    health.record(ok=False)
    health.record(ok=False)
    assert health.record(ok=False) is True
    assert not health.healthy


def test_readmits_after_healthy_threshold_successes() -> None:
    health = state(unhealthy=3, healthy=2)
    eject(health)
    assert health.record(ok=True) is False
    assert not health.healthy
    assert health.record(ok=True) is True  # the transition
    assert health.healthy
    assert health.record(ok=True) is False  # already healthy
    assert health.healthy


def test_failure_resets_success_count_while_ejected() -> None:
    health = state(unhealthy=3, healthy=3)
    eject(health)
    for _ in range(4):
        assert health.record(ok=True) is False
        assert health.record(ok=True) is False
        assert health.record(ok=False) is False
        assert health.successes == 0
    assert not health.healthy
    health.record(ok=True)
    health.record(ok=True)
    assert health.record(ok=True) is True
    assert health.healthy


def test_successes_while_healthy_do_not_shortcut_ejection() -> None:
    health = state(unhealthy=2, healthy=2)
    for _ in range(10):
        health.record(ok=True)
    health.record(ok=False)
    assert health.record(ok=False) is True
    # Successes counted before the ejection must not readmit at once.
    assert health.record(ok=True) is False
    assert not health.healthy


def test_thresholds_of_one() -> None:
    health = state(unhealthy=1, healthy=1)
    assert health.record(ok=False) is True
    assert not health.healthy
    assert health.record(ok=True) is True
    assert health.healthy


def test_record_remembers_last_probe() -> None:
    health = state()
    health.record(ok=False)
    assert health.last_probe_ok is False
    first = health.last_probe_at
    assert first is not None
    health.record(ok=True)
    assert health.last_probe_ok is True
    assert health.last_probe_at is not None
    assert health.last_probe_at >= first


def test_reset_makes_healthy() -> None:
    health = state(unhealthy=3, healthy=2)
    eject(health)
    health.record(ok=True)
    health.reset()
    assert health.healthy
    assert health.failures == 0
    assert health.successes == 0
    # The count starts over: it takes a full run of failures to eject again.
    assert health.record(ok=False) is False
    assert health.record(ok=False) is False
    assert health.record(ok=False) is True


def test_reset_clears_partial_failures() -> None:
    health = state(unhealthy=3)
    health.record(ok=False)
    health.record(ok=False)
    health.reset()
    assert health.record(ok=False) is False
    assert health.healthy


# ---------------------------------------------------------------------------- HealthPolicy


@pytest.mark.parametrize(
    ("interval", "timeout"),
    [(0.5, 0.5), (2.0, 2.0), (5.0, 5.0), (7.5, 5.0), (60.0, 5.0)],
)
def test_policy_timeout_is_min_of_interval_and_5(interval: float, timeout: float) -> None:
    assert HealthPolicy(interval=interval).timeout == timeout


def test_policy_timeout_without_interval() -> None:
    # interval 0 (no periodic checks) still gives a probe a usable timeout, not zero.
    assert HealthPolicy(interval=0).timeout == 5.0


def test_policy_defaults_and_frozen() -> None:
    policy = HealthPolicy(interval=10)
    assert policy.unhealthy_threshold == 3
    assert policy.healthy_threshold == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.interval = 1  # type: ignore[misc]


def test_ejected_for_counts_from_the_ejection_until_readmission() -> None:
    clock = FakeClock()
    health = HealthState(HealthPolicy(interval=10.0, healthy_threshold=1), clock=clock)
    health.record(ok=False)
    clock.advance(30)
    assert health.ejected_for() == 0  # one failed probe ejects nobody
    eject(health)
    clock.advance(7)
    assert health.ejected_for() == 7
    health.record(ok=True)
    assert health.healthy
    assert health.ejected_for() == 0
    eject(health)
    health.reset()  # a new session
    assert health.ejected_for() == 0
