"""The parts of a running operator, built once and handed to the reconcilers, the scaler and the informer
handlers."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxfleet.api.settings import PlatformSettings
from voxfleet.kube.client import KubeClient
from voxfleet.operator.cluster_view import AgentKey, ClusterView
from voxfleet.operator.event_recorder import EventRecorder
from voxfleet.operator.load_poller import LoadPoller
from voxfleet.operator.metrics import OperatorMetrics
from voxfleet.operator.object_applier import ObjectApplier
from voxfleet.operator.pools import PoolRegistry
from voxfleet.operator.settings import OperatorSettings
from voxfleet.operator.spec_checks import Problem

AGENT, TENANT = "agent", "tenant"  # queue key kinds: (AGENT, namespace, name), (TENANT, name)


@dataclass
class AgentMemory:
    """What the operator remembers about one VoiceAgent between reconciles (rebuilt after a restart)."""

    problems: list[Problem] = field(default_factory=list)
    observed_generation: int | None = None
    status_written_at: float = 0.0
    wording_since: float | None = None  # when a change of a condition's message alone was first held back
    # Regions whose pool is rolling out a new worker config: region -> the Deployment generation that carries it
    # (RolledOut is said once that generation is fully rolled out).
    rolling_out: dict[str, int] = field(default_factory=dict)


@dataclass
class Runtime:
    platform: PlatformSettings
    settings: OperatorSettings
    client: KubeClient
    view: ClusterView
    metrics: OperatorMetrics
    applier: ObjectApplier
    recorder: EventRecorder
    poller: LoadPoller
    pools: PoolRegistry = field(default_factory=PoolRegistry)
    agents: dict[AgentKey, AgentMemory] = field(default_factory=dict)

    @classmethod
    def build(cls, platform: PlatformSettings, settings: OperatorSettings, client: KubeClient,
              watch_client: KubeClient | None = None) -> "Runtime":
        """`client` sends the reconcilers' requests; `watch_client` (default: the same) carries the informers'
        lists and watches."""
        metrics = OperatorMetrics()
        view = ClusterView(watch_client or client, platform, tenant_selector=settings.tenant_selector)
        token = view.worker_token

        def root_token() -> str | None:
            # The platform's root worker token (the poller derives each namespace's token from it). Prefer the
            # platform setting (mounted Secret); else the platform-namespace Secret the operator watches anyway.
            if platform.worker_token is not None or platform.worker_token_file is not None:
                return platform.load_worker_token()
            value = token()
            return value.decode() if value else None

        poller = LoadPoller(root_token, port=platform.worker_port, timeout=settings.poll_timeout_seconds,
                            concurrency=settings.poll_concurrency, stale_after=settings.stale_report_seconds,
                            metrics=metrics)
        return cls(platform=platform, settings=settings, client=client, view=view, metrics=metrics,
                   applier=ObjectApplier(client, view.managed_version, metrics),
                   recorder=EventRecorder(client, metrics, settings.identity), poller=poller)

    def memory(self, key: AgentKey) -> AgentMemory:
        return self.agents.setdefault(key, AgentMemory())
