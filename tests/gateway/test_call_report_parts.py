"""How the gateway makes one report of a call from its workers' parts (gateway/call_reports.py `_report_from`),
without servers: a recovered call's parts in the order they ran (turns renumbered, times shifted to the call's
start, usage summed), one recovery entry per takeover with its outcome, the gateway's own duration and price,
speech-to-text audio clipped to the call, and a transcript only when the agent's spec records transcripts.
The same code against real workers and PostgreSQL: tests/gateway/test_call_reports.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from voxfleet.api.call_report import CallUsage, ReportTurn, TranscriptLine, WorkerCallReport
from voxfleet.api.voiceagent import VoiceAgentSpec
from voxfleet.gateway.call_reports import CallReports, ReportPart
from voxfleet.gateway.pricing import PriceList

START = datetime(2026, 12, 3, 23, 0, tzinfo=UTC)


@dataclass
class _Named:
    namespace: str = "tenant-t"
    spec: VoiceAgentSpec | None = None


class _Directory:
    """What the report needs of the gateway's Tenant and VoiceAgent informers: a tenant's namespace, an agent's spec."""

    def __init__(self, records: bool):
        self.spec = VoiceAgentSpec.model_validate({"regions": [{"name": "us-east"}],
                                                   "observability": {"recordTranscripts": records}})

    def get(self, *names: str) -> _Named:
        return _Named(spec=self.spec)


@dataclass
class _Runtime:
    settings: object
    tenants: _Directory
    agents: _Directory


@dataclass
class _Settings:
    prices: PriceList


@dataclass
class _State:
    database: None = None


@dataclass
class _App:
    state: _State


def _reports(records: bool) -> CallReports:
    directory = _Directory(records)
    return CallReports(_App(_State()), _Runtime(_Settings(PriceList()), directory, directory))


def _row() -> dict:
    return {"tenant": "t", "session_id": "sess-12345678", "agent": "a", "region": "us-east", "worker": "pod-a",
            "channel": "web", "started_at": START}


def _part(worker: str, start_s: float, end_s: float, *, recovered: bool, turns: int, region: str = "us-east",
          stt_ms: int = 1000, reason: str = "caller-left") -> ReportPart:
    return ReportPart(WorkerCallReport(
        session_id="sess-12345678", worker=worker, complete=True, recovered=recovered, end_reason=reason,
        started_at=START + timedelta(seconds=start_s), ended_at=START + timedelta(seconds=end_s),
        turns=[ReportTurn(index=i, at_ms=1000 * (i + 1), ttfa_ms=500 + i) for i in range(turns)],
        usage=CallUsage(stt_ms=stt_ms, llm_prompt_tokens=10, llm_completion_tokens=5, tts_characters=100),
        transcript=[TranscriptLine(role="caller", text=f"hello from {worker}", at_ms=500)]), region)


def test_a_recovered_calls_parts_make_one_report_in_the_order_they_ran():
    parts = [_part("pod-c", 40, 60, recovered=True, turns=1, region="eu-west"),  # fetched in any order
             _part("pod-a", 0, 20, recovered=False, turns=2, reason="deleted"),
             _part("pod-b", 20, 40, recovered=True, turns=2)]
    report = _reports(records=True)._report_from(_row(), parts)
    print(f"turns {[(t.index, t.at_ms) for t in report.turns]} recoveries"
          f" {[(r.from_worker, r.to_worker, r.outcome) for r in report.recoveries]} cost {report.cost_micros}")
    assert [t.index for t in report.turns] == [0, 1, 2, 3, 4]
    assert [t.at_ms for t in report.turns] == [1000, 2000, 21000, 22000, 41000]  # shifted to the call's start
    assert [(r.from_worker, r.to_worker, r.outcome) for r in report.recoveries] == [
        ("pod-a", "pod-b", "same_region"), ("pod-b", "pod-c", "other_region")]
    assert report.end_reason == "caller-left" and report.worker == "pod-c" and report.duration_ms == 60_000
    assert report.usage.to_wire() == {"sttMs": 3000, "llmPromptTokens": 30, "llmCompletionTokens": 15,
                                      "ttsCharacters": 300}
    assert report.cost_micros == PriceList().cost_micros(report.usage, 60_000)
    assert [line.at_ms for line in report.transcript] == [500, 20_500, 40_500]


def test_the_same_pod_taking_its_call_back_is_a_restarted_worker():
    parts = [_part("pod-a", 5, 30, recovered=True, turns=1)]
    report = _reports(records=False)._report_from(_row(), parts)
    assert [(r.from_worker, r.to_worker, r.outcome) for r in report.recoveries] == [(None, "pod-a",
                                                                                     "restarted_worker")]
    assert report.transcript is None  # the agent does not record transcripts: dropped whatever the worker sent


def test_the_gateways_own_facts_bound_what_a_worker_says():
    # The worker claims more speech-to-text audio than the call lasted, and an end before the call began.
    part = _part("pod-a", 0, -50, recovered=False, turns=0, stt_ms=3_600_000)
    report = _reports(records=False)._report_from(_row(), [part])
    print(f"duration {report.duration_ms} ms, stt {report.usage.stt_ms} ms")
    assert report.duration_ms == 0 and report.usage.stt_ms == 0
    future = _part("pod-a", 0, 10**6, recovered=False, turns=0, stt_ms=3_600_000)  # an end in the future
    report = _reports(records=False)._report_from(_row(), [future])
    assert report.ended_at <= datetime.now(UTC) and report.usage.stt_ms <= report.duration_ms
