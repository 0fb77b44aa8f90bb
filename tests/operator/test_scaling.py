"""Warm-pool scaling decisions (pure): the buffer formula, immediate scale-up, delayed scale-down to the window's
highest recommendation, idle workers first, never a busy one while an idle one exists."""

from __future__ import annotations

import pytest

from voxfleet.operator.scaling import PoolScaler, WorkerView, recommend, removable


@pytest.mark.parametrize(("active", "buffer", "per_worker", "low", "high", "expected"), [
    (0, 2, 4, 1, 10, 1),     # ceil(2/4) = 1
    (3, 2, 4, 1, 10, 2),     # ceil(5/4) = 2
    (8, 2, 4, 1, 10, 3),     # ceil(10/4) = 3
    (0, 0, 4, 0, 10, 0),     # no buffer, no calls, min 0: the pool may be empty
    (100, 2, 4, 1, 10, 10),  # capped by maxWorkers
    (0, 2, 4, 3, 10, 3),     # raised to minWorkers
])
def test_recommend_is_the_buffer_formula(active, buffer, per_worker, low, high, expected):
    assert recommend(active, buffer, per_worker, low, high) == expected


def busy(pod: str, active: int, idle: float = 0.0) -> WorkerView:
    return WorkerView(pod=pod, ready=True, active=active, free=4 - active, idle_seconds=idle, ever_ready=True)


def test_scale_up_is_immediate():
    scaler = PoolScaler(desired=1)
    assert scaler.step(3, now=0.0, delay=60, workers=[busy("a", 4)]) == []
    assert scaler.desired == 3


def test_scale_down_waits_for_the_delay_and_removes_idle_workers_first():
    scaler = PoolScaler(desired=3)
    workers = [busy("a", 2), busy("b", 0, idle=5), busy("c", 0, idle=50)]
    assert scaler.step(1, now=0.0, delay=30, workers=workers) == []
    assert scaler.step(1, now=29.0, delay=30, workers=workers) == []
    assert scaler.desired == 3
    victims = scaler.step(1, now=30.0, delay=30, workers=workers)
    assert scaler.desired == 1
    assert victims == ["c", "b"]  # idlest first; "a" has calls


def test_scale_down_goes_to_the_highest_recommendation_in_the_window():
    scaler = PoolScaler(desired=4)
    workers = [busy(p, 0) for p in "abcd"]
    scaler.step(1, now=0.0, delay=10, workers=workers)
    scaler.step(3, now=5.0, delay=10, workers=workers)  # a bump inside the window
    victims = scaler.step(1, now=10.0, delay=10, workers=workers)
    assert scaler.desired == 3 and len(victims) == 1


def test_a_rise_cancels_a_pending_scale_down():
    scaler = PoolScaler(desired=3)
    workers = [busy(p, 0) for p in "abc"]
    scaler.step(1, now=0.0, delay=10, workers=workers)
    scaler.step(3, now=5.0, delay=10, workers=workers)  # back to current: the dip is forgotten
    assert scaler.step(1, now=11.0, delay=10, workers=workers) == []
    assert scaler.desired == 3  # a fresh window started at 11


def test_never_removes_busy_workers_even_when_demand_says_so():
    scaler = PoolScaler(desired=3)
    workers = [busy("a", 1), busy("b", 1), busy("c", 0)]
    scaler.step(1, now=0.0, delay=0, workers=workers)
    victims = scaler.step(1, now=1.0, delay=0, workers=workers)
    assert victims == ["c"] and scaler.desired == 2


def test_unknown_workers_are_neither_busy_nor_removable():
    never_ready = WorkerView(pod="new", ready=False, active=None)
    lost = WorkerView(pod="lost", ready=True, active=None, ever_ready=True)  # answered before, silent now
    assert [w.pod for w in removable([never_ready, lost, busy("idle", 0)])] == ["new", "idle"]


def test_pods_the_deployment_could_not_create_go_first():
    scaler = PoolScaler(desired=4)
    workers = [busy("a", 1), busy("b", 1)]  # two of four were never created (e.g. quota)
    scaler.step(1, now=0.0, delay=0, workers=workers)
    victims = scaler.step(1, now=1.0, delay=0, workers=workers)
    assert victims == [] and scaler.desired == 2


def test_bounds_edit_clamps_at_once():
    scaler = PoolScaler(desired=5)
    scaler.clamp(1, 3, now=0.0)
    assert scaler.desired == 3
    scaler.clamp(4, 6, now=1.0)
    assert scaler.desired == 4
