"""Chaos benchmark: what a caller lives through when a part of the platform fails (issue 24), on real servers.

Everything runs on this machine: the world (the running one $VOXFLEET_WORLD_DIR names, else one of its own, as
the other benchmarks do), a livekit-server of the bench's own for us-east (it sends the gateway its webhooks and is
the one the LiveKit cut stops: never the world's), a `voxfleet gateway`, a `voxfleet operator` whose pods are real
`voxfleet worker` processes, and callers in the rooms. Scenarios (`--only a,b` runs some):

- kills: SIGKILL of the serving worker mid-call, `--kills N` times, on pools that each start with a single worker
  (`--pools P` fresh agents), with the default spare capacity (spareCapacity WorkerLoss). Per kill: the silence
  gap the caller heard (kill -> first agent audio; tests/chaos/gap_meter.py), who answered (same region,
  the restarted pod, another region, nobody within spec.recovery.deadlineMs), how many workers were ready, and at
  the end of each pool whether the recovered agent still answers a question. Goal: gap p95 <= 1.5 s.
- kills-buffer-only: the same with spareCapacity BufferOnly. Goal: every call recovered within the deadline.
- rolling-update: `--rolling-calls` live calls (20) on one agent, then a spec change; a call is cut if its agent
  left it or it got no answer to a question asked after the update. New calls must land on new workers. Goal 0.
- operator-outage: the operator SIGKILLed for `--operator-down-s` (60); sessions created (201) and served (the
  greeting heard) one after another the whole time; pool sizes while it is down; Deployment scale changes in the
  minute after it is back (thrash). Goal 100 %.
- apiserver-outage: the gateway's link to the kube-apiserver cut for `--apiserver-cut-s` (30) through a fault proxy
  of the bench's own (world/fault_proxy.py; the gateway's kubeconfig points at it from the start): sessions
  created and served meanwhile from its caches, its /readyz, and how soon its watches are healthy again.
  Goal 100 %.
- livekit-outage: the bench's own us-east livekit-server stopped for `--livekit-down-s` (30) and started again on
  the same ports: sessions asked for us-east created and served meanwhile (in the next region by latency), /readyz,
  and how soon sessions land in us-east again.

Baselines measured in the same run, because the machine is shared and noisy: the caller's own transport (two
one-way legs through the same livekit-server, tests/callers/caller_bot.measure_two_legs), the gap with the spare
turned off against the spare on, and the session success rate in a window before each outage.

Prints progress, a summary, its wall time, and one JSON line (prefix `BENCH_JSON `). Not part of `make test`.

    .venv/bin/python bench/chaos_bench.py [--only kills,rolling-update] [--kills 20] [--pools 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client  # noqa: E402

from tests.callers.caller_bot import CallerBot, Recogniser, measure_two_legs  # noqa: E402
from tests.chaos.gap_meter import GapMeter, percentile  # noqa: E402
from tests.chaos.worker_kills import kill_worker  # noqa: E402
from livekit import rtc  # noqa: E402

from tests.crds import install_crds  # noqa: E402
from tests.gateway import webhook_livekit  # noqa: E402
from tests.gateway.conftest import session_gateway_env  # noqa: E402
from tests.gateway.gateway_process import WORKER_TOKEN, GatewayProcess  # noqa: E402
from tests.gateway.tenant_setup import create_key, key_headers  # noqa: E402
from tests.operator.fleet import Fleet  # noqa: E402
from tests.operator.operator_process import OperatorProcess  # noqa: E402
from voxfleet.api import labels, room_names  # noqa: E402
from voxfleet.world import binaries, processes  # noqa: E402
from voxfleet.world.access import Cluster  # noqa: E402
from voxfleet.world.fault_proxy import FaultProxy  # noqa: E402
from voxfleet.world.world import WorldInfo, attach_or_start  # noqa: E402

OUTAGES = ["operator-outage", "apiserver-outage", "livekit-outage"]
# In the order they run: the LiveKit outage last (it restarts the LiveKit every other scenario uses).
SCENARIOS = ["kills", "kills-buffer-only", "operator-outage", "apiserver-outage", "rolling-update",
             "livekit-outage"]
REGION, NEXT_REGION = "us-east", "eu-west"
GREETING = "Hello, thank you for calling. How can I help you today?"
NEW_GREETING = "Good evening, you are through to the new line. What can I do for you?"
HOURS = "We are open every day from nine in the morning to six in the evening."
RECOVERY = "Sorry, we were cut off. I am back. How can I help?"
QUESTION = "what are your opening hours"
GAP_GOAL_S = 1.5
DEADLINE_MS = 15000  # spec.recovery.deadlineMs: the default, stated so the bench judges what it set
HEARD_GRACE_S = 10.0  # listen this long past the deadline, so a late recovery is measured rather than lost
QUIET_BEFORE_KILL_S = 0.8  # kill in a pause of the agent: no audio of the dead worker is still in flight
SETTLE_TIMEOUT_S = 90.0
RECOVERY_METRICS = ("voxfleet_gateway_session_recoveries_total", "voxfleet_gateway_recoveries_total")


def agent_spec(*, regions: list[dict], spare: str | None = None, per_worker: int = 2, buffer: int = 1,
               greeting: str = GREETING) -> dict:
    """The offline pipeline of tests/gateway/test_e2e_with_operator.py: PocketSphinx, a scripted LLM, eSpeak."""
    scaling: dict[str, Any] = {"sessionsPerWorker": per_worker, "bufferSessions": buffer}
    if spare is not None:
        scaling["spareCapacity"] = spare
    return {
        "greeting": greeting,
        "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                     "tts": {"provider": "espeak", "voice": "en-us"}},
        "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200},
                          "timeouts": {"speechTimeoutMs": 300}},
        "intents": [{"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS}],
        "regions": regions,
        "scaling": scaling,
        "recovery": {"deadlineMs": DEADLINE_MS},
        "limits": {"maxSessionSeconds": 900, "idleTimeoutSeconds": 600},
    }


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ms(seconds: float | None) -> int | None:
    return None if seconds is None or math.isnan(seconds) else round(seconds * 1000)


def gap_summary(gaps: list[float]) -> dict:
    if not gaps:
        return {"samples": 0}
    return {"samples": len(gaps), "p50_ms": ms(percentile(gaps, 0.50)), "p95_ms": ms(percentile(gaps, 0.95)),
            "max_ms": ms(max(gaps)), "mean_ms": ms(statistics.fmean(gaps))}


def recovery_counts(metrics_text: str) -> dict[str, float]:
    """outcome -> count over the gateway's recovery counters (R1's session_recoveries and the older recoveries)."""
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in RECOVERY_METRICS:
            continue
        outcome = re.search(r'outcome="([^"]*)"', line)
        key = f"{name.removeprefix('voxfleet_gateway_').removesuffix('_total')}:{outcome.group(1) if outcome else ''}"
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def counts_since(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k: round(v - before.get(k, 0.0)) for k, v in sorted(after.items()) if v - before.get(k, 0.0) > 0}


# --- the platform ---------------------------------------------------------------------------------------------

class Platform:
    """World + CRDs + platform namespace + the bench's us-east LiveKit + gateway + operator + one tenant."""

    def __init__(self, info: WorldInfo, work: Path):
        self.info = info
        self.work = work
        self.kube = Cluster.of(info)
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.gateway: GatewayProcess | None = None
        self.operator: OperatorProcess | None = None
        self.livekit: webhook_livekit.WebhookLiveKit | None = None
        self.api = None
        self.apiserver_proxy: FaultProxy | None = None
        self._closing = contextlib.ExitStack()

    def start(self) -> None:
        install_crds(self.kube)
        self.platform_namespace = self.kube.new_namespace("vfchaos")
        self.api = self._closing.enter_context(self.kube.api_client())
        client.CoreV1Api(self.api).create_namespaced_secret(self.platform_namespace, {
            "metadata": {"name": "voxfleet-worker-token"},
            "data": {"token": base64.b64encode(WORKER_TOKEN.encode()).decode()}})
        # The gateway reaches the apiserver through a fault proxy of the bench's own (forwarding until the
        # apiserver outage cuts it): the shared world's apiserver is never touched.
        self.apiserver_proxy = FaultProxy.in_front_of(self.info.apiserver_url, name="chaos-apiserver").start()
        config = yaml.safe_load(Path(self.kube.kubeconfig).read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = self.apiserver_proxy.url_for(self.info.apiserver_url)
        proxied = self.work / "kubeconfig-gateway-through-proxy"
        proxied.touch(mode=0o600)
        proxied.write_text(yaml.safe_dump(config))
        self.gateway = GatewayProcess(kubeconfig=proxied, platform_namespace=self.platform_namespace,
                                      log_path=self.logs / "gateway.log")
        self.livekit = webhook_livekit.start(webhook_url=f"{self.gateway.url}/livekit/webhook/{REGION}",
                                             state_dir=self.logs, world_id=self.info.world_id)
        shared = self.info.livekit_regions()
        regions = {name: {"url": lk.url, "apiUrl": lk.http_url, "apiKey": lk.api_key, "apiSecret": lk.api_secret}
                   for name, lk in shared.items()}
        regions["ap-south"] = dict(regions[NEXT_REGION])
        regions[REGION] = {"url": self.livekit.url, "apiUrl": self.livekit.http_url, "apiKey": self.livekit.api_key,
                           "apiSecret": self.livekit.api_secret}
        self.gateway.env.update(session_gateway_env(VOXFLEET_REGIONS=json.dumps(regions)))
        self.gateway.start()
        say(f"gateway on {self.gateway.url}; us-east LiveKit of the bench's own on {self.livekit.url}")
        self.shard = f"chaos{uuid.uuid4().hex[:6]}"
        self.operator = OperatorProcess(
            kubeconfig=self.kube.kubeconfig, platform_namespace=self.platform_namespace, shard=self.shard,
            log_path=self.logs / "operator.log",
            extra_env={"VOXFLEET_WORKER_COMMAND": json.dumps([sys.executable, "-m", "voxfleet.cli", "worker"])})
        self.operator.start()
        say("operator leading; creating the tenant")
        self.fleet = Fleet(self.api, self.shard, self.platform_namespace)
        self.tenant, self.namespace = self.fleet.create_tenant(
            "chaos", allowedRegions=[REGION, NEXT_REGION],
            quotas={"maxConcurrentSessions": 200, "maxWorkers": 40, "maxAgents": 20})
        self.fleet.wait_tenant_ready(self.tenant, timeout=120)
        self.headers = key_headers(create_key(self.kube, self.platform_namespace, self.tenant, "chaos bench"))

    def stop(self) -> None:
        for what, stop in (("agents and tenant", lambda: self.fleet.delete_everything()),
                           ("operator", lambda: self.operator and self.operator.stop()),
                           ("gateway", lambda: self.gateway and self.gateway.stop()),
                           ("livekit", lambda: self.livekit and self.livekit.stop()),
                           ("apiserver proxy", lambda: self.apiserver_proxy and self.apiserver_proxy.stop()),
                           ("namespace", lambda: self.kube.delete_namespace(self.platform_namespace))):
            try:
                stop()
            except Exception as error:  # noqa: BLE001 - stop the rest anyway
                say(f"stopping the {what}: {error!r}"[:300])
        self._closing.close()

    # --- agents and pools (the blocking kubernetes client: always called in a thread) ------------------------

    async def create_agent(self, name: str, spec: dict, timeout: float = 300) -> None:
        await asyncio.to_thread(self.fleet.create_agent, self.namespace, name, spec)
        await asyncio.to_thread(self.fleet.wait_agent_ready, self.namespace, name, timeout)

    async def delete_agent(self, name: str) -> None:
        await asyncio.to_thread(self.fleet.delete_agent, self.namespace, name)

    def _pool(self, agent: str, region: str) -> dict:
        pods = self.fleet.pool_pods(self.namespace, agent, region)
        ready = [p for p in pods if p.status.pod_ip and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        deployments = self.fleet.apps.list_namespaced_deployment(
            self.namespace, label_selector=f"{labels.AGENT}={agent},{labels.REGION}={region}").items
        desired = sum(d.spec.replicas or 0 for d in deployments)
        return {"pods": len(pods), "ready": len(ready), "desired": desired,
                "ready_names": sorted(p.metadata.name for p in ready)}

    async def pool(self, agent: str, region: str = REGION) -> dict:
        return await asyncio.to_thread(self._pool, agent, region)

    async def settle(self, agent: str, region: str = REGION, timeout: float = SETTLE_TIMEOUT_S) -> tuple[bool, dict]:
        """Until every pod the operator wants is Ready (and no extra pod is starting): the pool as it stands
        between faults. Returns (settled, pool)."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.pool(agent, region)
            if state["desired"] and state["ready"] >= state["desired"] and state["pods"] == state["ready"]:
                return True, state
            if time.monotonic() > deadline:
                return False, state
            await asyncio.sleep(0.5)

    async def pod_regions(self, agent: str) -> dict[str, str]:
        def read() -> dict[str, str]:
            pods = self.fleet.pool_pods(self.namespace, agent, include_terminating=True)
            return {p.metadata.name: (p.metadata.labels or {}).get(labels.REGION, "") for p in pods}
        return await asyncio.to_thread(read)

    # --- sessions --------------------------------------------------------------------------------------------

    async def create_session(self, agent: str, *, caller_region: str = REGION,
                             timeout: float = 30) -> tuple[int, dict]:
        """POST a session (503 while no warm worker is free is retried until ``timeout``)."""
        async with httpx.AsyncClient(base_url=self.gateway.url, headers=self.headers, timeout=30) as http:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    response = await http.post(f"/v1/agents/{agent}/sessions", json={"callerRegion": caller_region})
                except httpx.HTTPError as error:
                    return 0, {"error": type(error).__name__}
                if response.status_code != 503 or time.monotonic() > deadline:
                    return response.status_code, response.json() if response.content else {}
                await asyncio.sleep(0.5)

    async def end_session(self, session_id: str) -> None:
        async with httpx.AsyncClient(base_url=self.gateway.url, headers=self.headers, timeout=10) as http:
            try:
                await http.delete(f"/v1/sessions/{session_id}")
            except httpx.HTTPError:
                pass

    # --- the bench's own us-east LiveKit: stopped and started again on the same ports -------------------------

    def stop_livekit(self) -> None:
        self.livekit.stop()

    def restart_livekit(self) -> None:
        """The same server again (tests/gateway/webhook_livekit.py wrote its config, ports and keys included,
        beside its log, named as the server)."""
        name = self.livekit.server.name
        server = processes.start(name, [str(binaries.find("livekit-server").path),
                                        f"--config={self.logs / f'{name}.yaml'}"],
                                 log_dir=self.logs, world_id=self.info.world_id)
        self.livekit.server = server
        processes.wait_until(f"{name} again", lambda: _http_ok(self.livekit.http_url), timeout=30, servers=[server])

    def readyz(self) -> tuple[int, dict]:
        try:
            response = httpx.get(f"{self.gateway.operational_url}/readyz", timeout=5)
            return response.status_code, response.json()
        except (httpx.HTTPError, ValueError) as error:
            return 0, {"error": type(error).__name__}

    def recovery_metrics(self) -> dict[str, float]:
        try:
            return recovery_counts(self.gateway.metrics())
        except httpx.HTTPError:
            return {}


@contextlib.asynccontextmanager
async def bounded_exit(context, timeout: float = 30.0):
    """``async with context`` whose exit may take at most ``timeout``: a caller whose room connection broke (seen:
    a signal ping timeout on a loaded machine) can hang closing its audio streams, and one stuck call must not
    stop the whole run."""
    entered = await context.__aenter__()
    try:
        yield entered
    finally:
        try:
            await asyncio.wait_for(context.__aexit__(None, None, None), timeout)
        except (asyncio.TimeoutError, Exception) as error:  # noqa: BLE001 - leave it behind, say so
            say(f"  closing {type(context).__name__} took over {timeout:.0f} s or failed ({type(error).__name__})")


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --- kills -------------------------------------------------------------------------------------------------------

async def wait_for_quiet(meter: GapMeter, quiet_s: float = QUIET_BEFORE_KILL_S, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        last = meter.last_audio_before(now)
        if last is None or now - last >= quiet_s:
            return
        if now > deadline:
            raise TimeoutError("the agent never paused")
        await asyncio.sleep(0.05)


def caller_outcome(killed: str, answered: str | None, regions: dict[str, str]) -> str:
    """Who answered, as the caller tells it: the names R1's gateway metric uses. The region is the call's
    (us-east), not the killed worker's: a call already carried to eu-west that comes home counts as same_region."""
    if answered is None:
        return "not_recovered"
    if answered == killed:
        return "restarted_worker"
    return "same_region" if regions.get(answered) == REGION else "other_region"


async def kill_pool(platform: Platform, mode: str, index: int, kills: int, recogniser: Recogniser) -> dict:
    """One pool that starts with a single worker; a call on it; ``kills`` kills of whichever worker serves the call
    (a call nobody recovered is replaced by a new one, so every kill is measured)."""
    agent = f"kill-{'spare' if mode == 'WorkerLoss' else 'nospare'}-{index}-{uuid.uuid4().hex[:4]}"
    # One worker in us-east, where the calls are; eu-west is there for the last way out (the next region by latency
    # joins the same room) when neither a spare nor the restarted pod is ready in time.
    spec = agent_spec(regions=[{"name": REGION, "minWorkers": 1, "maxWorkers": 4},
                               {"name": NEXT_REGION, "minWorkers": 1, "maxWorkers": 2}], spare=mode)
    started = time.monotonic()
    await platform.create_agent(agent, spec)
    first_pool = await platform.pool(agent)
    say(f"{agent}: Ready in {time.monotonic() - started:.0f} s with {first_pool['ready']} worker(s)")
    records: list[dict] = []
    heard_audio: list[bytes | None] = []
    continued = None
    calls = 0
    while len(records) < kills:
        calls += 1
        call = await kill_call(platform, agent, kills - len(records), first_pool["ready"] if not records else None,
                               recogniser)
        records.extend(call["kills"])
        heard_audio.extend(call["audio"])
        continued = call["continued"] if call["continued"] is not None else continued
    await platform.delete_agent(agent)
    # Recognised after the timed part: decoding blocks the event loop about a second per line.
    for record, pcm in zip(records, heard_audio):
        record["recovery_line_heard"] = pcm is not None and recogniser.contains(pcm, RECOVERY, min_share=0.5)
    return {"agent": agent, "kills": records, "calls": calls, "answered_after_recoveries": continued}


async def kill_call(platform: Platform, agent: str, kills: int, single_start: int | None,
                    recogniser: Recogniser) -> dict:
    """One call, its serving worker killed up to ``kills`` times (until a kill is not recovered)."""
    status, session = await platform.create_session(agent, timeout=60)
    if status != 201:
        raise RuntimeError(f"{agent}: session create answered {status}: {session}")
    records: list[dict] = []
    audio: list[bytes | None] = []
    continued = None
    deadline_s = DEADLINE_MS / 1000
    async with bounded_exit(CallerBot(session["livekitUrl"], session["token"])) as caller, \
            bounded_exit(GapMeter(caller)) as meter:
        await caller.wait_for_agent_speech(timeout=30)
        await asyncio.sleep(3.0)  # the operator's load poll (1 s) sees the live call before the pool is judged
        for _ in range(kills):
            settled, pool = await platform.settle(agent)
            await wait_for_quiet(meter)
            pod = meter.serving_pod()
            if pod is None:
                raise RuntimeError(f"{agent}: no agent in the call before a kill")
            killed_at = await asyncio.to_thread(kill_worker, pod)
            record: dict[str, Any] = {"agent": agent, "killed_pod": pod,
                                      "first_of_single_worker_pool": single_start == 1 and not records,
                                      "settled": settled, "ready_workers_at_kill": pool["ready"],
                                      "desired_workers_at_kill": pool["desired"]}
            records.append(record)
            try:
                gap = await meter.gap_after(killed_at, timeout=deadline_s + HEARD_GRACE_S)
            except TimeoutError:
                record.update(outcome="not_recovered", gap_s=None, within_deadline=False, answered_pod=None)
                audio.append(None)
                say(f"{agent}: kill with {pool['ready']} ready (settled {settled}): nobody answered within"
                    f" {deadline_s + HEARD_GRACE_S:.0f} s; a new call for the next kill")
                break
            outcome = caller_outcome(pod, gap.pod, await platform.pod_regions(agent))
            record.update(outcome=outcome, gap_s=round(gap.since_fault, 3),
                          gap_since_last_audio_s=round(gap.since_last_audio, 3),
                          within_deadline=gap.since_fault <= deadline_s, answered_pod=gap.pod)
            say(f"{agent}: kill with {pool['ready']} ready (settled {settled}): gap {gap.since_fault * 1000:.0f} ms,"
                f" {outcome} ({gap.pod})")
            await asyncio.sleep(4.0)  # the recovery line (~3.4 s) plays out before the next kill
            audio.append(caller.agent_audio(gap.heard_at - 0.05, gap.heard_at + 3.8))
        if records and records[-1]["outcome"] != "not_recovered":
            await wait_for_quiet(meter)
            spoken = await caller.say(QUESTION)
            try:
                answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=20)
                continued = recogniser.contains(answer.pcm, HOURS, min_share=0.5)
            except TimeoutError:
                continued = False
    await platform.end_session(session["sessionId"])
    return {"kills": records, "audio": audio, "continued": continued}


async def kills_scenario(platform: Platform, mode: str, kills: int, pools: int) -> dict:
    recogniser = Recogniser([GREETING, HOURS, RECOVERY])
    before = platform.recovery_metrics()
    per_pool = [kills // pools + (1 if i < kills % pools else 0) for i in range(pools)]
    results = []
    for index, count in enumerate(per_pool):
        if count:
            results.append(await kill_pool(platform, mode, index, count, recogniser))
    records = [r for pool in results for r in pool["kills"]]
    gaps = [r["gap_s"] for r in records if r["gap_s"] is not None]
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    first = [r["gap_s"] for r in records if r["first_of_single_worker_pool"] and r["gap_s"] is not None]
    return {
        "spare_capacity": mode, "kills": len(records), "pools": len(results),
        "gap": gap_summary(gaps), "gap_first_kill_of_single_worker_pool": gap_summary(first),
        "recovered_within_deadline": sum(1 for r in records if r["within_deadline"]),
        "outcomes_heard": outcomes,
        "outcomes_gateway_metrics": counts_since(before, platform.recovery_metrics()),
        "recovery_line_heard": sum(1 for r in records if r.get("recovery_line_heard")),
        "answered_after_recoveries": [p["answered_after_recoveries"] for p in results],
        "calls": sum(p["calls"] for p in results),
        "unsettled_kills": sum(1 for r in records if not r["settled"]),
        "each": records,
    }


# --- sessions during an outage ------------------------------------------------------------------------------------

STEADY_SPEC = agent_spec(regions=[{"name": REGION, "minWorkers": 2, "maxWorkers": 3},
                                  {"name": NEXT_REGION, "minWorkers": 1, "maxWorkers": 2}])


async def probe_session(platform: Platform, agent: str, caller_region: str = REGION) -> dict:
    """One session as a caller's app makes it: created (201, no retry: a 503 counts as a failure here) and served
    (the greeting heard in the room), then ended."""
    began = time.monotonic()
    status, session = await platform.create_session(agent, caller_region=caller_region, timeout=0)
    result: dict[str, Any] = {"status": status, "create_ms": ms(time.monotonic() - began), "served": False}
    if status != 201:
        return result
    result["region"] = session.get("region")
    try:
        async with CallerBot(session["livekitUrl"], session["token"]) as caller:
            greeting = await caller.wait_for_agent_speech(timeout=15, silence_s=0.3)
            result.update(served=True, greeting_after_create_ms=ms(greeting.start - began))
    except Exception as error:  # noqa: BLE001 - a session that was not served is the figure
        result["serve_error"] = type(error).__name__
    finally:
        await platform.end_session(session["sessionId"])
    return result


async def session_window(platform: Platform, agent: str, seconds: float, *, caller_region: str = REGION,
                         label: str = "") -> dict:
    """Sessions one after another for ``seconds``: how many were created and served, and where they went."""
    attempts: list[dict] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        attempts.append(await probe_session(platform, agent, caller_region))
        if attempts[-1]["status"] != 201:
            await asyncio.sleep(0.5)  # a refusal comes back at once: don't spin
    created = [a for a in attempts if a["status"] == 201]
    served = [a for a in created if a["served"]]
    regions: dict[str, int] = {}
    for a in created:
        regions[a.get("region") or "?"] = regions.get(a.get("region") or "?", 0) + 1
    refusals: dict[str, int] = {}
    for a in attempts:
        if a["status"] != 201:
            refusals[str(a["status"])] = refusals.get(str(a["status"]), 0) + 1
    summary = {"attempts": len(attempts), "created": len(created), "served": len(served),
               "create_success_pct": round(100 * len(created) / len(attempts), 1) if attempts else None,
               "served_pct": round(100 * len(served) / len(attempts), 1) if attempts else None,
               "regions": regions, "refusals": refusals,
               "create_p50_ms": ms(statistics.median([a["create_ms"] / 1000 for a in attempts])) if attempts else None,
               "greeting_after_create_p50_ms": ms(statistics.median(
                   [a["greeting_after_create_ms"] / 1000 for a in served])) if served else None}
    say(f"  {label}: {summary['created']}/{summary['attempts']} created, {summary['served']} served,"
        f" regions {regions}, refusals {refusals}")
    return summary


async def sample_pools(platform: Platform, agent: str, stop: asyncio.Event, every: float = 2.0) -> dict:
    """Ready and desired workers per region, sampled until ``stop``: did the pools keep their size?"""
    seen: dict[str, dict[str, list[int]]] = {r: {"ready": [], "desired": []} for r in (REGION, NEXT_REGION)}
    while not stop.is_set():
        for region in seen:
            state = await platform.pool(agent, region)
            seen[region]["ready"].append(state["ready"])
            seen[region]["desired"].append(state["desired"])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    return {region: {"ready_min": min(v["ready"], default=None), "ready_max": max(v["ready"], default=None),
                     "desired_min": min(v["desired"], default=None), "desired_max": max(v["desired"], default=None)}
            for region, v in seen.items()}


async def scale_changes(platform: Platform, agent: str, seconds: float) -> dict:
    """How often the operator changed each region's desired workers within ``seconds`` (thrash when back)."""
    last: dict[str, int] = {}
    changes = {REGION: 0, NEXT_REGION: 0}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for region in changes:
            desired = (await platform.pool(agent, region))["desired"]
            if region in last and desired != last[region]:
                changes[region] += 1
            last[region] = desired
        await asyncio.sleep(1.0)
    return {"scale_changes": changes, "desired_at_end": last}


async def steady_agent(platform: Platform) -> str:
    if getattr(platform, "steady", None) is None:
        platform.steady = f"steady-{uuid.uuid4().hex[:4]}"
        await platform.create_agent(platform.steady, STEADY_SPEC)
        for region in (REGION, NEXT_REGION):
            await platform.settle(platform.steady, region)
        say(f"{platform.steady}: Ready in {REGION} and {NEXT_REGION}")
    return platform.steady


async def operator_outage(platform: Platform, down_s: float, baseline_s: float, converge_s: float) -> dict:
    agent = await steady_agent(platform)
    baseline = await session_window(platform, agent, baseline_s, label="before (operator up)")
    stop = asyncio.Event()
    sampling = asyncio.create_task(sample_pools(platform, agent, stop))
    platform.operator.kill()
    say(f"operator SIGKILLed for {down_s:.0f} s")
    during = await session_window(platform, agent, down_s, label="operator down")
    stop.set()
    pools = await sampling
    began = time.monotonic()
    await asyncio.to_thread(platform.operator.start)
    leading_s = round(time.monotonic() - began, 1)
    say(f"operator back, leading after {leading_s} s; watching for thrash for {converge_s:.0f} s")
    converge = await scale_changes(platform, agent, converge_s)
    return {"baseline": baseline, "during": during, "pools_while_down": pools, "operator_leading_after_s": leading_s,
            "after_restart": converge, "down_s": down_s}


async def sample_readyz(platform: Platform, stop: asyncio.Event, every: float = 1.0) -> dict:
    """The gateway's /readyz while a fault lasts: HTTP codes and the statuses it gave, with counts."""
    codes: dict[str, int] = {}
    statuses: dict[str, int] = {}
    began = time.monotonic()
    region_down_seen = None
    while not stop.is_set():
        code, body = await asyncio.to_thread(platform.readyz)
        if region_down_seen is None and ((body.get("regions") or {}).get(REGION) or {}).get("livekit") == "down":
            region_down_seen = round(time.monotonic() - began, 1)
        codes[str(code)] = codes.get(str(code), 0) + 1
        status = str(body.get("status") or body.get("code") or body.get("error"))
        statuses[status] = statuses.get(status, 0) + 1
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    return {"codes": codes, "statuses": statuses, "us_east_livekit_seen_down_after_s": region_down_seen}


async def during_fault(platform: Platform, agent: str, seconds: float, label: str) -> tuple[dict, dict]:
    stop = asyncio.Event()
    sampling = asyncio.create_task(sample_readyz(platform, stop))
    window = await session_window(platform, agent, seconds, label=label)
    stop.set()
    return window, await sampling


async def until(what: str, check, timeout: float, every: float = 0.5) -> float | None:
    """Seconds until ``check()`` (a blocking callable, run in a thread) holds; None if not within ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if await asyncio.to_thread(check):
            return round(time.monotonic() - began, 1)
        await asyncio.sleep(every)
    say(f"  {what}: not within {timeout:.0f} s")
    return None


async def apiserver_outage(platform: Platform, cut_s: float, baseline_s: float) -> dict:
    """The gateway's link to the kube-apiserver cut (connections reset, new ones refused) for ``cut_s``."""
    agent = await steady_agent(platform)
    baseline = await session_window(platform, agent, baseline_s, label="before (apiserver reachable)")
    platform.apiserver_proxy.cut()
    say(f"the gateway's apiserver link cut for {cut_s:.0f} s")
    try:
        during, readyz = await during_fault(platform, agent, cut_s, "apiserver cut")
    finally:
        platform.apiserver_proxy.forward()
    watches_back = await until("the gateway's watches healthy again", lambda: all(
        w.get("healthy") for w in (platform.readyz()[1].get("watches") or {"none": {}}).values()), timeout=90)
    say(f"  watches healthy {watches_back} s after the link came back")
    return {"baseline": baseline, "during": during, "readyz_during": readyz, "cut_s": cut_s,
            "watches_healthy_after_s": watches_back}


async def livekit_outage(platform: Platform, down_s: float, baseline_s: float) -> dict:
    """The bench's own us-east livekit-server stopped for ``down_s`` (its process gone, media too), callers asking
    for us-east all the while; then started again on the same ports."""
    agent = await steady_agent(platform)
    baseline = await session_window(platform, agent, baseline_s, label="before (us-east LiveKit up)")
    platform.stop_livekit()
    say(f"us-east livekit-server stopped for {down_s:.0f} s")
    try:
        during, readyz = await during_fault(platform, agent, down_s, "us-east LiveKit down")
    finally:
        await asyncio.to_thread(platform.restart_livekit)

    def placed_home() -> bool:
        response = httpx.post(f"{platform.gateway.url}/v1/agents/{agent}/sessions", headers=platform.headers,
                              json={"callerRegion": REGION}, timeout=10)
        if response.status_code != 201:
            return False
        httpx.delete(f"{platform.gateway.url}/v1/sessions/{response.json()['sessionId']}",
                     headers=platform.headers, timeout=10)
        return response.json().get("region") == REGION

    back = await until("sessions placed in us-east again", placed_home, timeout=90, every=1.0)
    say(f"  sessions placed in {REGION} again {back} s after its LiveKit restarted")
    return {"baseline": baseline, "during": during, "readyz_during": readyz, "down_s": down_s,
            "placed_in_region_again_after_s": back}


# --- a rolling update under load ----------------------------------------------------------------------------------

class MutedCaller:
    """A caller on mute: in the room, subscribed to the agent, sending nothing. Most rolling-update calls are these:
    twenty CallerBots streaming and decoding audio both ways in this process would starve on two shared cores."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.room = rtc.Room()

    async def join(self) -> None:
        await self.room.connect(self.url, self.token, options=rtc.RoomOptions(auto_subscribe=True))

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.room.disconnect(), 20)


class WatchedCall:
    """One call and every agent participant that came or went in its room while the caller was there: the agent
    that took the call leaving, or another one joining (a recovery), before the hang-up is a cut."""

    def __init__(self, session: dict, speaking: bool):
        self.session = session
        self.caller = (CallerBot if speaking else MutedCaller)(session["livekitUrl"], session["token"])
        self.agent = ""
        self.changes: list[tuple[float, str, str]] = []
        self.hung_up_at = math.inf

    async def join(self, timeout: float = 90) -> "WatchedCall":
        room = self.caller.room
        room.on("participant_connected", lambda p: self._seen("joined", p.identity))
        room.on("participant_disconnected", lambda p: self._seen("left", p.identity))
        await self.caller.join()
        deadline = time.monotonic() + timeout  # a loaded machine: the worker builds the pipeline, then joins
        while not (agents := [p.identity for p in room.remote_participants.values()
                              if room_names.is_agent_identity(p.identity)]):
            if time.monotonic() > deadline:
                await self.caller.leave()
                raise TimeoutError(f"no agent joined within {timeout:.0f} s")
            await asyncio.sleep(0.2)
        self.agent = agents[0]
        self.changes = [c for c in self.changes if c[2] != self.agent]  # its own arrival is no change
        return self

    def _seen(self, what: str, identity: str) -> None:
        if room_names.is_agent_identity(identity):
            self.changes.append((time.monotonic(), what, identity))

    @property
    def pod(self) -> str:
        return room_names.agent_identity_pod(self.agent) or ""

    def cut(self) -> bool:
        return any(at < self.hung_up_at and (identity == self.agent) == (what == "left")
                   for at, what, identity in self.changes)

    async def hang_up(self) -> None:
        self.hung_up_at = time.monotonic()
        await self.caller.leave()


async def place_call(platform: Platform, agent: str, *, speaking: bool) -> WatchedCall:
    status, session = await platform.create_session(agent, timeout=120)  # new workers load models first
    if status != 201:
        raise RuntimeError(f"{agent}: session create answered {status}: {session}")
    return await WatchedCall(session, speaking).join()


async def rolling_update(platform: Platform, calls: int, new_calls: int, speak_every: int = 5) -> dict:
    """``calls`` live calls, a spec change (new greeting), a few callers speaking once the rollout is under way,
    new calls, then the hang-ups: every call must have stayed with the agent that took it."""
    agent = f"rolling-{uuid.uuid4().hex[:4]}"
    per_worker = 10
    workers = math.ceil(calls / per_worker) + 1  # what WorkerLoss keeps for that many live calls
    spec = agent_spec(regions=[{"name": REGION, "minWorkers": workers, "maxWorkers": workers + 1}],
                      per_worker=per_worker, buffer=1)
    await platform.create_agent(agent, spec)

    def pods_by_hash() -> dict[str, str]:
        return {p.metadata.name: (p.metadata.annotations or {}).get(labels.CONFIG_HASH, "")
                for p in platform.fleet.pool_pods(platform.namespace, agent, include_terminating=True)}

    live: list[WatchedCall] = []
    fresh: list[WatchedCall] = []
    try:
        placed_at = time.monotonic()
        for batch in range(0, calls, 5):
            placed = await asyncio.gather(*(place_call(platform, agent, speaking=i % speak_every == 0)
                                            for i in range(batch, min(calls, batch + 5))), return_exceptions=True)
            live += [c for c in placed if isinstance(c, WatchedCall)]
            failures = [c for c in placed if not isinstance(c, WatchedCall)]
            if failures:
                raise RuntimeError(f"placing calls: {failures[0]!r}")
        hashes = await asyncio.to_thread(pods_by_hash)
        old_pods = {c.pod for c in live}
        old_hash = {hashes.get(pod, "") for pod in old_pods}
        say(f"{calls} calls live on {len(old_pods)} workers (placed in {time.monotonic() - placed_at:.0f} s);"
            f" changing the spec")
        await asyncio.to_thread(platform.fleet.patch_agent, platform.namespace, agent, {"greeting": NEW_GREETING})
        patched_at = time.monotonic()

        def new_ready() -> list[str]:
            return [p.metadata.name for p in platform.fleet.ready_pods(platform.namespace, agent)
                    if (p.metadata.annotations or {}).get(labels.CONFIG_HASH) not in old_hash]

        new_worker_s = await until("a ready worker on the new config", new_ready, timeout=300)
        for _ in range(new_calls):
            fresh.append(await place_call(platform, agent, speaking=True))
        hashes = await asyncio.to_thread(pods_by_hash)
        on_new = sum(1 for c in fresh if hashes.get(c.pod) not in old_hash)
        speakers = [c for c in live if isinstance(c.caller, CallerBot)]
        answered = 0
        for call in speakers:  # one at a time: their answers are judged by ear, not by a log
            spoken = await call.caller.say(QUESTION)
            with contextlib.suppress(TimeoutError):
                await call.caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=40)
                answered += 1
        say(f"rollout under way: a new worker ready after {new_worker_s} s, {on_new}/{new_calls} new calls on new"
            f" workers, {answered}/{len(speakers)} speakers answered; hanging up")
        hung_up_at = time.monotonic()
        await asyncio.gather(*(c.hang_up() for c in live + fresh))  # a new call on an old worker holds it too
        gone_s = await until("every old worker gone after its last call",
                             lambda: not (old_pods & set(pods_by_hash())), timeout=240)
        rollout_s = round(time.monotonic() - patched_at) if gone_s is not None else None
    finally:
        await asyncio.gather(*(c.hang_up() for c in live + fresh if c.hung_up_at == math.inf),
                             return_exceptions=True)
        for c in live + fresh:
            await platform.end_session(c.session["sessionId"])
        await platform.delete_agent(agent)
    cut = [c for c in live + fresh if c.cut()]
    return {"calls": calls, "old_workers": len(old_pods), "calls_cut": len(cut) + (len(speakers) - answered),
            "cut_in_room": len(cut), "speakers_unanswered": len(speakers) - answered,
            "cut_changes": [c.changes for c in cut][:5], "new_calls": new_calls, "new_calls_on_new_workers": on_new,
            "new_worker_ready_after_change_s": new_worker_s, "old_workers_gone_after_hang_up_s": gone_s,
            "change_to_rollout_done_s": rollout_s, "hang_up_after_change_s": round(hung_up_at - patched_at)}


# --- the transport baseline ---------------------------------------------------------------------------------------

async def transport_baseline(platform: Platform) -> dict:
    legs = await measure_two_legs(platform.livekit, count=10)
    return {"two_legs_p50_ms": ms(statistics.median(legs)), "two_legs_p95_ms": ms(percentile(legs, 0.95)),
            "samples": len(legs)}


# --- main -----------------------------------------------------------------------------------------------------

async def run(platform: Platform, args: argparse.Namespace, results: dict) -> None:
    results["transport_baseline"] = await transport_baseline(platform)
    say(f"transport baseline (caller -> LiveKit -> listener, twice): {results['transport_baseline']}")
    scenarios = {
        "kills": lambda: kills_scenario(platform, "WorkerLoss", args.kills, args.pools),
        "kills-buffer-only": lambda: kills_scenario(platform, "BufferOnly", args.buffer_only_kills or args.kills,
                                                    args.pools),
        "operator-outage": lambda: operator_outage(platform, args.operator_down_s, 20.0, 60.0),
        "apiserver-outage": lambda: apiserver_outage(platform, args.apiserver_cut_s, 20.0),
        "rolling-update": lambda: rolling_update(platform, args.rolling_calls, 2),
        "livekit-outage": lambda: livekit_outage(platform, args.livekit_down_s, 20.0),
    }
    for name in SCENARIOS:
        scenario = scenarios[name]
        if name not in args.only:
            continue
        say(f"==> {name}")
        began = time.monotonic()
        try:
            results[name] = await scenario()
        except Exception as error:  # noqa: BLE001 - report it, run the other scenarios
            traceback.print_exc()
            results[name] = {"error": repr(error)[:500]}
        results[name]["wall_s"] = round(time.monotonic() - began)
        say(f"{name} done in {results[name]['wall_s']} s")
        if args.details:  # what is measured so far survives an interrupted run
            args.details.write_text(json.dumps(results, indent=1, sort_keys=True))


def ratios(results: dict) -> dict:
    out: dict[str, float] = {}
    transport = (results.get("transport_baseline") or {}).get("two_legs_p50_ms")
    spare = (results.get("kills") or {}).get("gap", {})
    nospare = (results.get("kills-buffer-only") or {}).get("gap", {})
    if transport and spare.get("p50_ms") is not None:
        out["gap_p50_over_transport_p50"] = round(spare["p50_ms"] / transport, 1)
    if spare.get("p95_ms") and nospare.get("p95_ms") is not None:
        out["gap_p95_spare_off_over_on"] = round(nospare["p95_ms"] / spare["p95_ms"], 2)
    if spare.get("p50_ms") and nospare.get("p50_ms") is not None:
        out["gap_p50_spare_off_over_on"] = round(nospare["p50_ms"] / spare["p50_ms"], 2)
    for name in OUTAGES:
        r = results.get(name) or {}
        if r.get("baseline", {}).get("create_success_pct"):
            out[f"{name}_create_during_over_before"] = round(
                r["during"]["create_success_pct"] / r["baseline"]["create_success_pct"], 2)
    return out


def goals(results: dict) -> dict:
    out: dict[str, bool] = {}
    spare = results.get("kills") or {}
    if spare.get("kills"):
        out["kills_gap_p95_le_1500ms"] = spare["recovered_within_deadline"] == spare["kills"] \
            and spare["gap"]["p95_ms"] <= GAP_GOAL_S * 1000
    nospare = results.get("kills-buffer-only") or {}
    if "kills" in nospare:
        out["buffer_only_all_within_deadline"] = nospare["recovered_within_deadline"] == nospare["kills"] > 0
    rolling = results.get("rolling-update") or {}
    if "calls_cut" in rolling:
        out["rolling_update_cuts_no_call"] = rolling["calls_cut"] == 0
    for name in ("operator-outage", "apiserver-outage"):
        r = results.get(name) or {}
        if "during" in r:
            out[f"{name}_all_sessions_created"] = r["during"]["create_success_pct"] == 100.0
    return out


def report(results: dict) -> None:
    print("\nvoxfleet chaos benchmark (everything on this machine)")
    machine = results["machine"]
    print(f"machine: {machine['cpus']} CPUs, load average {machine['loadavg_start']:.1f} ->"
          f" {machine.get('loadavg_end', float('nan')):.1f}")
    if "transport_baseline" in results:
        t = results["transport_baseline"]
        print(f"caller transport (two legs through LiveKit): p50 {t['two_legs_p50_ms']} ms, p95 {t['two_legs_p95_ms']} ms")
    for name in ("kills", "kills-buffer-only"):
        r = results.get(name)
        if not r:
            continue
        if "error" in r:
            print(f"{name}: FAILED {r['error']}")
            continue
        g = r["gap"]
        print(f"\n{name} (spareCapacity {r['spare_capacity']}): {r['kills']} kills on {r['pools']} pools that"
              f" started with one worker, {r['calls']} calls")
        print(f"  silence gap kill -> agent heard: p50 {g.get('p50_ms')} ms, p95 {g.get('p95_ms')} ms,"
              f" max {g.get('max_ms')} ms; first kill of each single-worker pool:"
              f" {r['gap_first_kill_of_single_worker_pool']}")
        print(f"  recovered within the deadline ({DEADLINE_MS} ms): {r['recovered_within_deadline']}/{r['kills']};"
              f" who answered (caller): {r['outcomes_heard']}; gateway metrics: {r['outcomes_gateway_metrics']}")
        print(f"  recovery line recognised: {r['recovery_line_heard']}/{r['kills']}; agent answered a question"
              f" after the kills: {r['answered_after_recoveries']}; kills before the pool settled:"
              f" {r['unsettled_kills']}")
    r = results.get("rolling-update")
    if r:
        if "error" in r:
            print(f"\nrolling-update: FAILED {r['error']}")
        else:
            print(f"\nrolling update with {r['calls']} live calls on {r['old_workers']} workers: {r['calls_cut']} cut"
                  f" ({r['cut_in_room']} lost or moved their agent, {r['speakers_unanswered']} speakers unanswered);"
                  f" new calls on new workers {r['new_calls_on_new_workers']}/{r['new_calls']}; a new worker ready"
                  f" {r['new_worker_ready_after_change_s']} s after the change; old workers gone"
                  f" {r['old_workers_gone_after_hang_up_s']} s after the hang-ups"
                  f" ({r['change_to_rollout_done_s']} s from the change)")
    for name in OUTAGES:
        r = results.get(name)
        if not r:
            continue
        if "error" in r:
            print(f"\n{name}: FAILED {r['error']}")
            continue
        b, d = r["baseline"], r["during"]
        print(f"\n{name}: sessions created {d['created']}/{d['attempts']} ({d['create_success_pct']} %), served"
              f" {d['served']} ({d['served_pct']} %), regions {d['regions']}, refusals {d['refusals']};"
              f" before it: {b['create_success_pct']} % created, {b['served_pct']} % served")
        for key in ("pools_while_down", "after_restart", "readyz_during", "operator_leading_after_s",
                    "watches_healthy_after_s", "placed_in_region_again_after_s"):
            if key in r:
                print(f"  {key}: {r[key]}")
    print(f"\nratios: {results['ratios']}")
    print(f"goals: {results['goals']}")
    print(f"wall time: {results['wall_s']} s")
    compact = {k: ({kk: vv for kk, vv in v.items() if kk != "each"} if isinstance(v, dict) else v)
               for k, v in results.items()}
    print("BENCH_JSON " + json.dumps({"bench": "chaos", **compact}, sort_keys=True))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios (default all): {', '.join(SCENARIOS)}")
    parser.add_argument("--kills", type=int, default=20, help="worker kills per spare-capacity mode")
    parser.add_argument("--buffer-only-kills", type=int, default=0,
                        help="kills with spareCapacity BufferOnly (default: as --kills)")
    parser.add_argument("--pools", type=int, default=4, help="fresh single-worker pools the kills are spread over")
    parser.add_argument("--rolling-calls", type=int, default=20, help="live calls during the rolling update")
    parser.add_argument("--operator-down-s", type=float, default=60.0, help="seconds the operator is down")
    parser.add_argument("--apiserver-cut-s", type=float, default=30.0, help="seconds the apiserver link is cut")
    parser.add_argument("--livekit-down-s", type=float, default=30.0, help="seconds us-east's LiveKit is down")
    parser.add_argument("--details", type=Path, default=None, help="write every kill's record here (JSON)")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; known: {SCENARIOS}")

    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="voxfleet-chaos-bench-"))
    say(f"work folder {work} (logs/: gateway, operator, LiveKit)")
    info, world = attach_or_start(work, progress=lambda m: say(f"world: {m}"))
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0]},
                               "scenarios": args.only, "kills_per_mode": args.kills, "pools_per_mode": args.pools,
                               "deadline_ms": DEADLINE_MS}
    platform = Platform(info, work)
    try:
        platform.start()
        asyncio.run(run(platform, args, results))
    except KeyboardInterrupt:  # Ctrl-C: what was measured so far is still reported
        results["interrupted"] = True
        say("interrupted: reporting the scenarios that finished")
    finally:
        platform.stop()
        if world is not None:
            world.stop()
    results["machine"]["loadavg_end"] = os.getloadavg()[0]
    results["ratios"] = ratios(results)
    results["goals"] = goals(results)
    results["wall_s"] = round(time.monotonic() - began)
    if args.details:
        args.details.write_text(json.dumps(results, indent=1, sort_keys=True))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
