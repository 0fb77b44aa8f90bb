"""Leader election on a coordination.k8s.io Lease, so two operator replicas never fight: only the holder
reconciles and scales; a standby waits and takes over once the holder stops renewing.

Like client-go's leader election, expiry is judged by when *we* last saw the Lease record change (local monotonic
time), not by the holder's clock. A holder that cannot renew for a whole lease duration stops acting before a
standby may take over (the caller exits), so there is never a moment with two active replicas.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

import structlog

from voxfleet.kube.client import KubeClient
from voxfleet.kube.errors import Conflict, KubeApiError, NotFound

log = structlog.get_logger("voxfleet.operator.lease")


def _micro_time() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderLease:
    def __init__(self, client: KubeClient, *, namespace: str, name: str, identity: str, duration: float,
                 renew_every: float):
        self.client = client
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew_every = duration, renew_every
        self.held = False
        self._seen: tuple[Any, ...] | None = None  # (holder, renewTime) last observed
        self._seen_at = 0.0
        self._renewed_at = 0.0

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro_time()
        spec = dict(previous or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=max(1, round(self.duration)),
                    renewTime=now)
        return spec

    async def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease."""
        lease = await self.client.get_or_none("Lease", self.name, self.namespace)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(None)}
            try:
                await self.client.create(body)
            except Conflict:
                return False  # another replica created it first
            return self._won()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"))
        now = time.monotonic()
        if record != self._seen:
            self._seen, self._seen_at = record, now
        if holder and holder != self.identity and now - self._seen_at < self.duration:
            return False  # someone else holds it and has renewed within a lease duration (as far as we saw)
        lease["spec"] = self._spec(spec)
        try:
            await self.client.replace(lease)  # carries resourceVersion: loses cleanly against a concurrent writer
        except Conflict:
            return False
        return self._won()

    def _won(self) -> bool:
        if not self.held:
            log.info("leader lease acquired", lease=self.name, identity=self.identity)
        self.held = True
        self._renewed_at = time.monotonic()
        return True

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        while True:
            try:
                if await self.try_acquire():
                    return
            except (KubeApiError, OSError) as error:
                log.warning("leader lease: cannot reach the apiserver", error=str(error)[:300])
            await asyncio.sleep(self.renew_every)

    async def hold(self) -> None:
        """Renew until the Lease is lost; returns then (the caller must stop acting)."""
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                if not await self.try_acquire():
                    log.error("leader lease taken by another replica", lease=self.name)
                    break
            except Exception as error:  # noqa: BLE001 - any failure to renew counts against the deadline
                log.warning("leader lease renewal failed", error=str(error)[:300])
            # Stop well before a standby could consider the lease expired.
            if time.monotonic() - self._renewed_at > self.duration * 0.8:
                log.error("leader lease not renewed in time; stepping down", lease=self.name)
                break
        self.held = False

    async def release(self) -> None:
        """On a clean shutdown: hand the Lease over at once instead of making the standby wait it out."""
        if not self.held:
            return
        try:
            lease = await self.client.get("Lease", self.name, self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.client.replace(lease)
        except (KubeApiError, NotFound, OSError) as error:
            log.warning("could not release the leader lease", error=str(error)[:300])
        self.held = False
