"""Warm-pool scaling decisions (pure): the buffer formula, the spare for the loss of one worker (N+1), immediate
scale-up, delayed scale-down to the window's highest recommendation, idle workers first, never a busy one while an
idle one exists."""

from __future__ import annotations

import itertools

import pytest

from voxfleet.api.voiceagent import Region, Scaling
from voxfleet.operator.scaling import (
    PoolScaler, WorkerView, recommend, recommend_with_spare, removable, workers_for_worker_loss)


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


# --- the spare for the loss of one worker (spareCapacity) ----------------------------------------------------------

def spreads(active: int, workers: int, per_worker: int):
    """Every way `active` calls can sit on `workers` workers of `per_worker` slots (as multisets of loads)."""
    for loads in itertools.combinations_with_replacement(range(per_worker + 1), workers):
        if sum(loads) == active:
            yield loads


def survives_any_single_loss(loads: tuple[int, ...], per_worker: int) -> bool:
    """Losing any one worker, its calls fit in the free slots of the others."""
    return all(sum(per_worker - other for j, other in enumerate(loads) if j != i) >= lost
               for i, lost in enumerate(loads))


@pytest.mark.parametrize("per_worker", [1, 2, 3, 4, 6])
def test_the_worker_loss_rule_is_exact_whatever_the_spread(per_worker):
    """N = ceil(active / spw) + 1 workers take any one lost worker's calls for EVERY placement of the calls (so
    the gateway's placement does not matter), and N - 1 workers fail for every placement that fits at all."""
    checked = 0
    for active in range(1, 3 * per_worker + 1):
        wanted = workers_for_worker_loss(active, per_worker)
        for loads in spreads(active, wanted, per_worker):
            assert survives_any_single_loss(loads, per_worker), (active, loads)
            checked += 1
        for loads in spreads(active, wanted - 1, per_worker):
            assert not survives_any_single_loss(loads, per_worker), (active, loads)
            checked += 1
    print(f"sessionsPerWorker {per_worker}: {checked} placements checked")
    assert checked > 0


def test_a_draining_workers_calls_must_fit_on_the_live_workers():
    assert workers_for_worker_loss(0, 4) == 0  # no calls: no spare
    assert workers_for_worker_loss(0, 4, busiest_draining=3) == 1  # a rollout's old worker: its calls need a home
    assert workers_for_worker_loss(3, 4, busiest_draining=4) == 2  # 3 + 4 calls on live workers: 2 x 4 slots
    assert workers_for_worker_loss(4, 4, busiest_draining=4) == 2  # the + 1 already covers it


DEFAULTS = Scaling()
DEFAULT_REGION = Region(name="us-east")


@pytest.mark.parametrize(("active", "worker_loss", "buffer_only"), [
    (0, 1, 1), (1, 2, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2), (5, 3, 2), (20, 6, 6),
])
def test_the_cost_at_the_defaults(active, worker_loss, buffer_only):
    """sessionsPerWorker 4, bufferSessions 2, minWorkers 1, maxWorkers 10 (the documented table)."""
    figures = (DEFAULTS.buffer_sessions, DEFAULTS.sessions_per_worker, DEFAULT_REGION.min_workers,
               DEFAULT_REGION.max_workers)
    assert DEFAULTS.spare_capacity == "WorkerLoss"
    spare = recommend_with_spare(active, *figures, spare_capacity="WorkerLoss")
    plain = recommend_with_spare(active, *figures, spare_capacity="BufferOnly")
    print(f"{active} live call(s): WorkerLoss {spare.workers} worker(s), BufferOnly {plain.workers}")
    assert (spare.workers, plain.workers) == (worker_loss, buffer_only)
    assert plain.workers == recommend(active, *figures) and plain.spare == 0
    assert spare.spare == worker_loss - buffer_only


def test_a_single_worker_pool_with_one_call_gets_a_second_worker_and_says_why():
    decision = recommend_with_spare(1, 2, 4, 1, 10)
    assert (decision.workers, decision.for_buffer, decision.spare) == (2, 1, 1)
    said = decision.why(1, 2)
    print(f"ScaledUp message: us-east: 1 -> 2 worker(s) for {said}")
    assert "worker-loss spare" in said


def test_the_spare_stays_within_max_workers_and_the_quota_but_never_trims_the_buffer():
    capped = recommend_with_spare(8, 0, 4, 1, 2)  # wants 3, maxWorkers 2
    assert (capped.workers, capped.spare, capped.short_by, capped.limit) == (2, 0, 1, "maxWorkers")
    assert "left out by maxWorkers" in capped.why(8, 0)
    quota = recommend_with_spare(8, 0, 4, 1, 10, quota_room=2)
    assert (quota.workers, quota.short_by, quota.limit) == (2, 1, "quota")
    no_room = recommend_with_spare(9, 2, 4, 1, 10, quota_room=0)  # the buffer alone wants 3: it keeps them
    assert (no_room.workers, no_room.for_buffer, no_room.spare) == (3, 3, 0)
    assert recommend_with_spare(0, 0, 4, 0, 10).workers == 0  # no calls, no buffer, min 0: empty
