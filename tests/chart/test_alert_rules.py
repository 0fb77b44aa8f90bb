"""The chart's alerts, judged by the real promtool (Prometheus v3, built by world/build-servers.sh):

- `promtool check rules` accepts the rules file and the PrometheusRule the chart renders from it;
- `promtool test rules` passes tests/chart/alert_rules_test.yaml, which must hold, for every alert, a case where
  it fires (with its rendered summary and description) and a quiet case (normal traffic, or a bad pool below the
  rule's traffic floor), so a new alert without both fails here;
- every alert has a severity, a summary, a description and a runbook_url whose anchor is a runbook entry in
  docs/operations.md.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.helm_render import CHART, MONITORING_API_VERSIONS, ROOT, VALUES_FILES, find, render
from voxfleet.world import binaries

RULES = CHART / "files" / "alert-rules.yaml"
CASES = Path(__file__).with_name("alert_rules_test.yaml")
OPERATIONS = ROOT / "docs" / "operations.md"


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries.find("promtool").path), *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules_file():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout.strip().splitlines()[-1])


def test_every_alert_fires_and_stays_quiet_under_promtool():
    cases = yaml.safe_load(CASES.read_text())["tests"]
    firing: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in cases:
        for check in case.get("alert_rule_test", []):
            tally = firing if check.get("exp_alerts") else quiet
            tally[check["alertname"]] = tally.get(check["alertname"], 0) + 1
    names = [rule["alert"] for rule in alerts()]
    assert not [n for n in names if n not in firing], "alerts without a firing case"
    assert not [n for n in names if n not in quiet], "alerts without a quiet case"
    assert not (set(firing) | set(quiet)) - set(names), "cases for alerts that no longer exist"
    result = promtool("test", "rules", str(CASES))
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"promtool test rules: {len(names)} alerts, {sum(firing.values())} firing and {sum(quiet.values())} quiet"
          f" checks in {len(cases)} cases: {result.stdout.strip().splitlines()[-1]}")


def _runbook_anchors() -> set[str]:
    """GitHub's anchors of docs/operations.md's headings (lower case, punctuation dropped, spaces to dashes)."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", OPERATIONS.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_says_how_bad_what_and_where_its_runbook_is(rule):
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
    anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
    assert anchor == rule["alert"].lower()
    assert anchor in _runbook_anchors(), f"docs/operations.md has no runbook entry '### {rule['alert']}'"


def test_the_chart_renders_the_same_alerts_as_a_prometheus_rule_promtool_accepts(tmp_path):
    manifests = render(values=(VALUES_FILES["production"],), api_versions=MONITORING_API_VERSIONS,
                       set_values=("monitoring.prometheusRule.disabledAlerts={VoxfleetGatewayAbsent}",
                                   "monitoring.prometheusRule.runbookBaseUrl=https://wiki.example/voice"))
    rule = find(manifests, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # what the operator's selector matches
    rendered = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    expected = [r for r in alerts() if r["alert"] != "VoxfleetGatewayAbsent"]
    assert [r["alert"] for r in rendered] == [r["alert"] for r in expected]
    for got, want in zip(rendered, expected):
        assert (got["expr"], got.get("for")) == (want["expr"], want.get("for"))
        assert got["labels"] == {**want["labels"], "team": "voice-platform"}  # production's additionalAlertLabels
        assert got["annotations"]["runbook_url"] == f"https://wiki.example/voice#{want['alert'].lower()}"
    as_rule_file = tmp_path / "rendered-rules.yaml"
    as_rule_file.write_text(yaml.safe_dump(rule["spec"]))
    result = promtool("check", "rules", str(as_rule_file))
    assert result.returncode == 0, result.stdout + result.stderr
    off = render(values=(VALUES_FILES["production"],))  # the API not served: nothing to apply it to
    assert not [m for m in off if m["kind"] == "PrometheusRule"]


def _exported_names() -> set[str]:
    """Every metric family and sample name the three components' registries export (in process)."""
    from voxfleet.gateway.livekit_health import LiveKitHealth
    from voxfleet.gateway.metrics import GatewayMetrics
    from voxfleet.operator.metrics import OperatorMetrics
    from voxfleet.worker.telemetry import metrics as worker_metrics

    from voxfleet.gateway.database_health import DatabaseHealth
    from voxfleet.store.database import Database

    gateway = GatewayMetrics()
    LiveKitHealth({}, gateway.registry)  # the LiveKit probe's metrics live on the gateway's registry too
    # ... and the store's probe, with a database configured (the pool connects to nothing until used)
    DatabaseHealth(Database.from_url("postgresql+asyncpg://voxfleet@127.0.0.1:1/voxfleet"), gateway.registry)
    names: set[str] = set()
    for registry in (gateway.registry, OperatorMetrics().registry, worker_metrics.REGISTRY):
        for family in registry.collect():
            names |= {family.name, f"{family.name}_total" if family.type == "counter" else family.name}
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")
                      if family.type == "histogram"}
            names |= {sample.name for sample in family.samples}
    return names


def test_alerts_and_their_cases_name_only_metrics_the_components_export():
    """promtool only sees the cases' own series: a misspelt metric would pass there and never fire for real."""
    exported = _exported_names()
    in_rules = {name for rule in alerts() for name in re.findall(r"\b(voxfleet_[a-z_]+)", rule["expr"])}
    cases = yaml.safe_load(CASES.read_text())["tests"]
    in_cases = {re.match(r"\s*([a-z_:]+)", series["series"]).group(1)
                for case in cases for series in case["input_series"]}
    assert sorted(in_rules - exported) == [], "alerts on metrics nobody exports"
    assert sorted(in_cases - exported) == [], "promtool cases with series nobody exports"
    print(f"{len(in_rules)} metrics in the alerts, {len(in_cases)} in the cases, all exported")
