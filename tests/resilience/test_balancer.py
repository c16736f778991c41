"""Tests for mcp_agg.resilience.balancer: the five strategies, PeakEwma, make_balancer."""

from __future__ import annotations

import collections
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from mcp_agg.resilience.balancer import (
    Balancer,
    LeastConnections,
    LoadView,
    P2CPeakEwma,
    PeakEwma,
    RandomChoice,
    RoundRobin,
    SmoothWeighted,
    make_balancer,
)
from tests.fakes import FakeClock


@dataclass
class FakeReplica:
    """A LoadView with settable load."""

    id: str
    weight: float = 1.0
    in_flight: int = 0
    latency: float = 0.0


def replicas(*ids: str) -> list[FakeReplica]:
    return [FakeReplica(id=i) for i in ids]


def picks(balancer: Balancer, candidates: Sequence[FakeReplica], n: int) -> list[str]:
    return [balancer.pick(candidates).id for _ in range(n)]


def test_fake_replica_is_a_load_view() -> None:
    view: LoadView = FakeReplica("a", weight=2.0, in_flight=1, latency=0.5)
    assert (view.id, view.weight, view.in_flight, view.latency) == ("a", 2.0, 1, 0.5)


# ---------------------------------------------------------------------------- round robin


def test_round_robin_cycles() -> None:
    candidates = replicas("a", "b", "c")
    assert picks(RoundRobin(), candidates, 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_even_counts() -> None:
    candidates = replicas("a", "b", "c")
    counts = collections.Counter(picks(RoundRobin(), candidates, 3000))
    assert counts == {"a": 1000, "b": 1000, "c": 1000}


# ---------------------------------------------------------------------------- smooth weighted


def test_smooth_weighted_exact_proportions_5_1_1() -> None:
    candidates = [
        FakeReplica("heavy", weight=5),
        FakeReplica("b", weight=1),
        FakeReplica("c", weight=1),
    ]
    counts = collections.Counter(picks(SmoothWeighted(), candidates, 7000))
    assert counts == {"heavy": 5000, "b": 1000, "c": 1000}


def test_smooth_weighted_interleaves() -> None:
    candidates = [
        FakeReplica("heavy", weight=5),
        FakeReplica("b", weight=1),
        FakeReplica("c", weight=1),
    ]
    balancer = SmoothWeighted()
    first = picks(balancer, candidates, 7)
    # nginx's smooth sequence: the light ones come in the middle of the cycle.
    assert first == ["heavy", "heavy", "b", "heavy", "c", "heavy", "heavy"]
    assert collections.Counter(first) == {"heavy": 5, "b": 1, "c": 1}
    # Never the burst a plain weighted round robin gives (5 heavy in a row), even
    # across cycle boundaries.
    sequence = first + picks(balancer, candidates, 700)
    longest = max(len(list(run)) for key, run in itertools.groupby(sequence) if key == "heavy")
    assert longest < 5
    # Every cycle of 7 has the same make-up.
    for start in range(0, len(sequence), 7):
        cycle = sequence[start : start + 7]
        assert collections.Counter(cycle) == {"heavy": 5, "b": 1, "c": 1}


def test_smooth_weighted_3_to_1() -> None:
    candidates = [FakeReplica("a", weight=3), FakeReplica("b", weight=1)]
    counts = collections.Counter(picks(SmoothWeighted(), candidates, 4000))
    assert counts["a"] + counts["b"] == 4000
    assert abs(counts["a"] - 3000) <= 40
    assert abs(counts["b"] - 1000) <= 40


def test_smooth_weighted_equal_weights_is_round_robin() -> None:
    candidates = replicas("a", "b", "c")
    assert picks(SmoothWeighted(), candidates, 6) == ["a", "b", "c", "a", "b", "c"]


# ---------------------------------------------------------------------------- least connections


def test_least_connections_picks_fewest_in_flight() -> None:
    candidates = [
        FakeReplica("a", in_flight=3),
        FakeReplica("b", in_flight=1),
        FakeReplica("c", in_flight=2),
    ]
    assert set(picks(LeastConnections(), candidates, 10)) == {"b"}


def test_least_connections_spreads_ties() -> None:
    candidates = [
        FakeReplica("a", in_flight=0),
        FakeReplica("b", in_flight=4),
        FakeReplica("c", in_flight=0),
    ]
    counts = collections.Counter(picks(LeastConnections(), candidates, 100))
    assert counts == {"a": 50, "c": 50}


def test_least_connections_follows_changing_load() -> None:
    a, b = FakeReplica("a"), FakeReplica("b")
    balancer = LeastConnections()
    for _ in range(6):
        chosen = balancer.pick([a, b])
        chosen.in_flight += 1
    assert a.in_flight == b.in_flight == 3


# ---------------------------------------------------------------------------- random


def test_random_choice_spreads_with_seeded_rng() -> None:
    candidates = replicas("a", "b", "c")
    counts = collections.Counter(picks(RandomChoice(random.Random(1234)), candidates, 3000))
    assert set(counts) == {"a", "b", "c"}
    for count in counts.values():
        assert 0.25 * 3000 <= count <= 0.42 * 3000


def test_random_choice_is_reproducible_with_seed() -> None:
    candidates = replicas("a", "b", "c", "d")
    first = picks(RandomChoice(random.Random(7)), candidates, 50)
    second = picks(RandomChoice(random.Random(7)), candidates, 50)
    assert first == second


# ---------------------------------------------------------------------------- p2c peak ewma


def test_p2c_prefers_low_latency() -> None:
    slow = FakeReplica("slow", latency=0.2, in_flight=1)
    fast = FakeReplica("fast", latency=0.01, in_flight=1)
    balancer = P2CPeakEwma(random.Random(42))
    assert set(picks(balancer, [slow, fast], 500)) == {"fast"}
    assert set(picks(balancer, [fast, slow], 500)) == {"fast"}


def test_p2c_fast_wins_whenever_sampled() -> None:
    # With three candidates the fast one wins every pair it is in, and the slowest
    # never wins a pair.
    fast = FakeReplica("fast", latency=0.01)
    mid = FakeReplica("mid", latency=0.1)
    slow = FakeReplica("slow", latency=0.2)
    counts = collections.Counter(picks(P2CPeakEwma(random.Random(3)), [fast, mid, slow], 3000))
    assert "slow" not in counts
    # fast is in 2 of the 3 possible pairs.
    assert counts["fast"] / 3000 == pytest.approx(2 / 3, abs=0.05)
    assert counts["mid"] / 3000 == pytest.approx(1 / 3, abs=0.05)


def test_p2c_prefers_idle_on_equal_latency() -> None:
    busy = FakeReplica("busy", latency=0.05, in_flight=5)
    idle = FakeReplica("idle", latency=0.05, in_flight=0)
    balancer = P2CPeakEwma(random.Random(0))
    assert set(picks(balancer, [busy, idle], 500)) == {"idle"}
    assert set(picks(balancer, [idle, busy], 500)) == {"idle"}


def test_p2c_prefers_idle_while_latency_unknown() -> None:
    # Latency is 0 until a replica has answered (LoadView.latency: "0 while unknown"),
    # which is every replica at startup. The load is still known and should decide.
    busy = FakeReplica("busy", latency=0.0, in_flight=5)
    idle = FakeReplica("idle", latency=0.0, in_flight=0)
    balancer = P2CPeakEwma(random.Random(0))
    counts = collections.Counter(picks(balancer, [busy, idle], 200))
    assert counts == {"idle": 200}


def test_p2c_single_candidate() -> None:
    only = FakeReplica("only", latency=9.0, in_flight=100)
    assert P2CPeakEwma(random.Random(0)).pick([only]) is only


@pytest.mark.parametrize(
    "balancer",
    [RoundRobin(), LeastConnections(), SmoothWeighted(), RandomChoice(), P2CPeakEwma()],
    ids=["round-robin", "least-connections", "weighted", "random", "p2c-ewma"],
)
def test_single_candidate_returned_as_is(balancer: Balancer) -> None:
    only = FakeReplica("only", weight=3, in_flight=2, latency=0.3)
    for _ in range(5):
        assert balancer.pick([only]) is only


@pytest.mark.parametrize(
    "balancer",
    [RoundRobin(), LeastConnections(), SmoothWeighted(), RandomChoice(), P2CPeakEwma()],
    ids=["round-robin", "least-connections", "weighted", "random", "p2c-ewma"],
)
def test_picks_are_candidates(balancer: Balancer) -> None:
    candidates = [FakeReplica(str(i), weight=i + 1, in_flight=i, latency=i / 10) for i in range(5)]
    for _ in range(50):
        assert balancer.pick(candidates) in candidates


# ---------------------------------------------------------------------------- make_balancer


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("round-robin", RoundRobin),
        ("least-connections", LeastConnections),
        ("weighted", SmoothWeighted),
        ("random", RandomChoice),
        ("p2c-ewma", P2CPeakEwma),
    ],
)
def test_make_balancer(name: str, cls: type) -> None:
    balancer = make_balancer(name)
    assert type(balancer) is cls


def test_make_balancer_returns_fresh_instances() -> None:
    assert make_balancer("round-robin") is not make_balancer("round-robin")


def test_make_balancer_unknown_name() -> None:
    with pytest.raises(KeyError):
        make_balancer("fastest")


# ---------------------------------------------------------------------------- peak ewma


def test_peak_ewma_starts_at_zero() -> None:
    assert PeakEwma(clock=FakeClock()).value == 0.0


def test_peak_ewma_takes_slower_sample_at_once() -> None:
    clock = FakeClock()
    ewma = PeakEwma(decay=10.0, clock=clock)
    ewma.observe(0.1)
    assert ewma.value == 0.1
    clock.advance(0.001)
    ewma.observe(2.0)
    assert ewma.value == 2.0


def test_peak_ewma_decays_toward_faster_samples() -> None:
    clock = FakeClock()
    ewma = PeakEwma(decay=10.0, clock=clock)
    ewma.observe(1.0)
    clock.advance(10.0)
    ewma.observe(0.0)
    assert ewma.value == pytest.approx(math.exp(-1.0))
    clock.advance(5.0)
    ewma.observe(0.0)
    assert ewma.value == pytest.approx(math.exp(-1.5))


def test_peak_ewma_more_time_means_closer_to_new_value() -> None:
    values: list[float] = []
    for elapsed in (0.0, 1.0, 5.0, 20.0, 100.0):
        clock = FakeClock()
        ewma = PeakEwma(decay=10.0, clock=clock)
        ewma.observe(1.0)
        clock.advance(elapsed)
        ewma.observe(0.2)
        assert 0.2 <= ewma.value <= 1.0
        expected = 0.2 + 0.8 * math.exp(-elapsed / 10.0)
        assert ewma.value == pytest.approx(expected)
        values.append(ewma.value)
    assert values[0] == pytest.approx(1.0)  # no time passed: nothing forgotten
    assert values == sorted(values, reverse=True)
    assert len(set(values)) == len(values)
    assert values[-1] == pytest.approx(0.2, abs=1e-4)


def test_peak_ewma_clock_going_backwards_is_no_time() -> None:
    clock = FakeClock()
    ewma = PeakEwma(decay=10.0, clock=clock)
    ewma.observe(1.0)
    clock.advance(-5.0)
    ewma.observe(0.0)
    assert ewma.value == pytest.approx(1.0)
