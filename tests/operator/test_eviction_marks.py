"""The eviction guard's two decisions, from a worker's reported calls: the mark a pod carries (the pool's
PodDisruptionBudget selects the busy ones) and whether a worker on a leaving node is told to drain. The whole
path (a real kubectl drain against the real disruption controller, a caller in the room) is
tests/chaos/test_node_drain.py."""

from voxfleet.operator.eviction_guard import mark_after_process_end, needs_drain, wanted_mark
from voxfleet.operator.load_poller import WorkerCalls


def calls(active: int | None, draining: bool = False) -> WorkerCalls:
    return WorkerCalls("tenant-a", "w-1", "uid-1", active, draining)


def test_a_worker_with_a_call_is_not_safe_to_evict_and_an_idle_one_is():
    assert wanted_mark(calls(1)) == "false"
    assert wanted_mark(calls(3, draining=True)) == "false"  # draining: its calls still run
    assert wanted_mark(calls(0)) == "true"
    assert wanted_mark(calls(0, draining=True)) == "true"


def test_unknown_calls_keep_the_mark_the_pod_has():
    # Never answered, or silent longer than the poller's stale_after: never called safe on a guess.
    assert wanted_mark(calls(None)) is None


def test_a_report_from_before_the_worker_process_ended_counts_for_nothing():
    # A drained worker exits after its last call and is restarted: its last report (1 call, draining) is the old
    # process's; the node's drain must not wait for it to age out.
    assert mark_after_process_end(calls(1, draining=True), report_at=100.0, ended_at=101.0) == "true"
    assert mark_after_process_end(calls(None), report_at=None, ended_at=101.0) == "true"
    # A report read after the end is the new process's own.
    assert mark_after_process_end(calls(1), report_at=102.0, ended_at=101.0) == "false"
    assert mark_after_process_end(calls(1), report_at=100.0, ended_at=None) == "false"


def test_only_busy_workers_on_a_leaving_node_that_are_not_draining_yet_are_told_to_drain():
    assert needs_drain(calls(2), node_leaving=True)
    assert not needs_drain(calls(2), node_leaving=False)
    assert not needs_drain(calls(0), node_leaving=True)  # idle: evicted at once, no drain needed
    assert not needs_drain(calls(2, draining=True), node_leaving=True)
    assert not needs_drain(calls(None), node_leaving=True)  # unreachable: nothing to ask
