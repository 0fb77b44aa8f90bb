"""Is each region's LiveKit answering? A cheap probe per LiveKit deployment, every second or so.

A session placed in a region whose livekit-server is down is a dead call: the worker cannot join its room and
the caller's token points at nothing. So the gateway asks each LiveKit deployment (several regions may share
one) for its HTTP root, which livekit-server answers "OK" without touching rooms or auth, with a short timeout;
`down_after` failures in a row mark every region it serves down, one answer marks them up again. Placement skips
down regions (the next region by latency takes the call), /readyz shows each region, and
`voxfleet_gateway_livekit_up{region}` says it to Prometheus.

A region not yet probed counts as up: before the first answers the gateway knows nothing against it. The
thresholds are lenient on purpose (3 failures of 2 s probes): a busy machine's slow answer must not move calls
to a farther region; a crashed server refuses at once and is seen within about three seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voxfleet.gateway.settings import LiveKitRegion

log = structlog.get_logger(__name__)

_PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class LiveKitState:
    """What the probes of one LiveKit deployment say."""

    url: str
    regions: list[str]
    up: bool | None = None  # None: not probed yet
    failures: int = 0  # failed probes in a row
    since: float = 0.0  # monotonic time of the last change of `up`
    problem: str = ""  # the last failure's kind (an exception class or an HTTP status), never a body


class LiveKitHealth:
    def __init__(self, regions: dict[str, LiveKitRegion], registry: CollectorRegistry, *, period: float = 1.0,
                 timeout: float = 2.0, down_after: int = 3):
        self.period = period
        self.timeout = timeout
        self.down_after = down_after
        by_url: dict[str, LiveKitState] = {}
        for name, settings in regions.items():
            url = settings.twirp_url().rstrip("/")
            by_url.setdefault(url, LiveKitState(url=url, regions=[])).regions.append(name)
        self.deployments = list(by_url.values())
        self._of_region = {region: state for state in self.deployments for region in state.regions}
        self.up_gauge = Gauge("voxfleet_gateway_livekit_up",
                              "1 when the region's LiveKit answers the gateway's probe, 0 when it is down (sessions"
                              " go to the next region by latency).", ["region"], registry=registry)
        self.changes = Counter("voxfleet_gateway_livekit_changes",
                               "A region's LiveKit went down or came back up, as the gateway's probes saw it.",
                               ["region", "to"], registry=registry)
        self.probe_seconds = Histogram("voxfleet_gateway_livekit_probe_seconds",
                                       "One probe of a LiveKit deployment (by a region it serves), by result.",
                                       ["region", "result"], buckets=_PROBE_BUCKETS, registry=registry)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None

    # --- what placement and /readyz read -------------------------------------------------------------------

    def is_up(self, region: str) -> bool:
        """False only for a region whose LiveKit is known to be down (unknown regions and unprobed ones: True)."""
        state = self._of_region.get(region)
        return state is None or state.up is not False

    def usable(self, regions: Iterable[str]) -> list[str]:
        """The regions whose LiveKit is not known to be down, in the order given."""
        return [region for region in regions if self.is_up(region)]

    def any_up(self) -> bool:
        return not self.deployments or any(state.up is not False for state in self.deployments)

    def detail(self) -> dict[str, dict[str, object]]:
        """Region -> {"livekit": "up"|"down"|"unknown", "forSeconds": ...}: for /readyz (no URLs, no errors)."""
        now = time.monotonic()
        return {region: {"livekit": "unknown" if state.up is None else "up" if state.up else "down",
                         "forSeconds": round(now - state.since, 1) if state.up is not None else None}
                for region, state in sorted(self._of_region.items())}

    # --- probing --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """One probe round now (so /readyz is right from the start), then a round every period."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        await self.probe_all()
        self._task = asyncio.create_task(self._probe_forever(), name="livekit health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _probe_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.probe_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the probing must outlive one bad round
                log.exception("livekit probe round failed")
            await asyncio.sleep(max(0.05, self.period - (time.monotonic() - started)))

    async def probe_all(self) -> None:
        await asyncio.gather(*(self._probe(state) for state in self.deployments))

    async def _probe(self, state: LiveKitState) -> None:
        assert self._session is not None
        started = time.perf_counter()
        problem = ""
        try:
            async with self._session.get(state.url + "/", allow_redirects=False) as response:
                await response.read()
                if response.status != 200:
                    problem = f"HTTP {response.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            problem = type(error).__name__
        elapsed = time.perf_counter() - started
        for region in state.regions:
            self.probe_seconds.labels(region, "ok" if not problem else "failed").observe(elapsed)
        self._note(state, problem)

    def _note(self, state: LiveKitState, problem: str) -> None:
        if not problem:
            state.failures, state.problem = 0, ""
            self._set(state, True)
            return
        state.failures += 1
        state.problem = problem
        if state.failures >= self.down_after:
            self._set(state, False)

    def _set(self, state: LiveKitState, up: bool) -> None:
        changed = state.up is not None and state.up != up
        first = state.up is None
        if first or changed:
            state.since = time.monotonic()
        state.up = up
        for region in state.regions:
            self.up_gauge.labels(region).set(1 if up else 0)
            if changed:
                self.changes.labels(region, "up" if up else "down").inc()
        if changed or (first and not up):
            (log.info if up else log.warning)(
                "livekit is " + ("back up" if up else "down: sessions go to other regions"),
                regions=state.regions, problem=state.problem or None, failed_probes=state.failures)
