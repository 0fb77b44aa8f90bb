"""The operator's Prometheus metrics, in their own registry (so two operators in one test process don't clash).

Pool figures carry tenant/agent/region labels; `voxfleet_pool_desired_workers` is also what a KEDA or HPA
setup would read if a platform preferred its own autoscaler.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voxfleet.telemetry.build_info import register_standard_metrics

POOL = ("tenant", "agent", "region")


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        register_standard_metrics(r, "operator")
        self.reconciles = Counter("voxfleet_operator_reconciles_total", "Reconciles run.", ["kind", "result"],
                                  registry=r)
        self.reconcile_seconds = Histogram("voxfleet_operator_reconcile_duration_seconds", "Time per reconcile.",
                                           ["kind"], registry=r,
                                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.applies = Counter("voxfleet_operator_applies_total", "Server-side applies sent (skipped ones not"
                                                                  " counted).", ["kind"], registry=r)
        self.status_writes = Counter("voxfleet_operator_status_writes_total", "Status subresource writes.",
                                     ["kind"], registry=r)
        self.queue_depth = Gauge("voxfleet_operator_queue_depth", "Objects waiting for or in a reconcile.",
                                 registry=r)
        self.pools = Gauge("voxfleet_operator_pools", "Warm pools (agent x region) the operator scales.", registry=r)
        self.desired = Gauge("voxfleet_pool_desired_workers", "Workers the scaler wants.", POOL, registry=r)
        self.ready = Gauge("voxfleet_pool_ready_workers", "Ready workers.", POOL, registry=r)
        self.active = Gauge("voxfleet_pool_active_sessions", "Calls in progress.", POOL, registry=r)
        self.free = Gauge("voxfleet_pool_free_slots", "Free session slots.", POOL, registry=r)
        self.scale_events = Counter("voxfleet_operator_scale_events_total", "Pool size changes by the scaler.",
                                    ["direction"], registry=r)
        self.polls = Counter("voxfleet_operator_load_polls_total", "GET /v1/load requests.", ["result"], registry=r)
        self.poll_round_seconds = Histogram("voxfleet_operator_load_poll_round_seconds",
                                            "Time to poll every worker once.", registry=r,
                                            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
        self.poll_last_round = Gauge("voxfleet_operator_load_poll_last_round_seconds",
                                     "Duration of the last poll-and-scale round.", registry=r)
        self.poll_last_sweep = Gauge("voxfleet_operator_load_poll_last_sweep_seconds",
                                     "Duration of the last GET /v1/load sweep over every worker (the poll alone).",
                                     registry=r)
        self.polled_workers = Gauge("voxfleet_operator_load_polled_workers", "Workers polled in the last round.",
                                    registry=r)
        self.poll_failures = Counter("voxfleet_operator_load_poll_failures_total",
                                     "Failed /v1/load polls per pool.", POOL, registry=r)
        self.events = Counter("voxfleet_operator_events_total", "Kubernetes Events posted.", ["reason"], registry=r)
        # Eviction safety (eviction_guard): workers with a live call are marked not safe to evict.
        self.eviction_protected = Gauge("voxfleet_operator_eviction_protected_workers",
                                        "Worker pods marked safe-to-evict=false (a call in progress) after the last"
                                        " load sweep.", registry=r)
        self.eviction_marks = Counter("voxfleet_operator_eviction_marks_total",
                                      "Changes of a worker pod's safe-to-evict mark.", ["safe_to_evict"], registry=r)
        self.worker_drains = Counter("voxfleet_operator_worker_drain_requests_total",
                                     "POST /v1/drain sent to busy workers on a cordoned or leaving node (ok, failed), and"
                                     " such a worker evicted once its process ended (evicted).", ["result"],
                                     registry=r)
        self.leader = Gauge("voxfleet_operator_leader", "1 while this replica holds the Lease.", registry=r)

    def forget_pool(self, tenant: str, agent: str, region: str) -> None:
        for gauge in (self.desired, self.ready, self.active, self.free):
            try:
                gauge.remove(tenant, agent, region)
            except KeyError:
                pass
