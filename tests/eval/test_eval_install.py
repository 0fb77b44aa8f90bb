"""What a tenant's CI installs: a clean venv with only voxfleet's eval extra (requirements/eval.lock, then voxfleet
built from this tree without dependencies, as the image does) runs `voxfleet eval --help` and a scenario suite
against the test world (a real gateway and a real worker answering real calls), with no Pipecat, kopf,
onnxruntime or Kubernetes client in it. Its installed size is printed beside this full install's.

The suite is the offline demo's, without the barge-in and recording scenarios and with loose TTFA bounds: this
test is about the install, not about timing (tests/eval/test_example_suite.py judges those in the real-time
phase), so it runs in the parallel one.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml

from tests.eval.eval_platform import REPO, offline_demo_spec, read_report

pytestmark = [pytest.mark.world, pytest.mark.timeout(1800)]

LOCK = REPO / "requirements" / "eval.lock"
HEAVY = ("pipecat-ai", "kopf", "onnxruntime", "kubernetes", "fastapi")
SCENARIOS_KEPT = ("opening-hours", "order-status")


def _size_mb(folder: Path) -> float:
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total / 1e6


def _pip(python: Path, *args: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"pip {' '.join(args[:3])} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def eval_venv(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("eval-install") / "venv"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    python = where / "bin" / "python"
    _pip(python, "install", "--quiet", "--require-hashes", "-r", str(LOCK))
    _pip(python, "install", "--quiet", "--no-deps", str(REPO))  # a built wheel, not an editable install
    print(f"clean venv with voxfleet[eval] from {LOCK.relative_to(REPO)} in {time.monotonic() - started:.0f} s")
    return where


def _site_packages(venv: Path) -> Path:
    python = venv / "bin" / "python"
    return Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())


def _voxfleet(venv: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run([str(venv / "bin" / "voxfleet"), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or {**os.environ}, cwd=venv.parent)


def test_the_eval_install_is_light_and_says_so(eval_venv):
    listed = subprocess.run([str(eval_venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, check=True).stdout
    installed = {line.split("==")[0].lower() for line in listed.splitlines() if "==" in line}
    eval_size = _size_mb(_site_packages(eval_venv))
    full_size = _size_mb(Path(sysconfig.get_paths()["purelib"]))
    print(f"installed size: voxfleet[eval] {eval_size:.0f} MB ({len(installed)} packages) vs the full install "
          f"(every extra and the test tools) {full_size:.0f} MB")
    assert not installed & set(HEAVY), f"the eval install holds {sorted(installed & set(HEAVY))}"
    assert eval_size < full_size / 3


def test_eval_help_and_version_run_from_the_light_install(eval_venv):
    help_text = _voxfleet(eval_venv, "eval", "--help")
    assert help_text.returncode == 0 and "--baseline" in help_text.stdout, help_text.stderr[-2000:]
    version = _voxfleet(eval_venv, "--version")
    assert version.returncode == 0 and version.stdout.startswith("voxfleet "), version.stderr


def test_a_platform_command_names_the_extra_it_needs(eval_venv):
    result = _voxfleet(eval_venv, "worker", "--help")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "pip install 'voxfleet[worker]'" in result.stderr, result.stderr


def test_a_suite_runs_against_the_test_world(eval_venv, eval_platform, tmp_path):
    suite = yaml.safe_load((REPO / "examples" / "scenarios" / "offline-demo.yaml").read_text())
    suite = copy.deepcopy(suite)
    suite["scenarios"] = [s for s in suite["scenarios"] if s["name"] in SCENARIOS_KEPT]
    suite["defaults"] = {**suite.get("defaults", {}), "ttfaMaxMs": 20000}
    for scenario in suite["scenarios"]:
        for turn in scenario["turns"]:
            turn.get("expect", {}).pop("ttfaMaxMs", None)
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(suite, sort_keys=False))

    eval_platform.deploy("concierge", offline_demo_spec(eval_platform.tool.url), workers=1)
    argv, env = eval_platform.eval_command(suite_path, "--report", str(tmp_path / "report.json"),
                                           "--concurrency", "1", "--retries", "1")
    started = time.monotonic()
    result = _voxfleet(eval_venv, *argv[1:], env=env, timeout=900)
    report = read_report(tmp_path / "report.json") if (tmp_path / "report.json").exists() else {}
    summary = report.get("summary", {})
    print(f"voxfleet eval from the light install: exit {result.returncode} in {time.monotonic() - started:.0f} s, "
          f"{summary.get('scenariosPassed')}/{summary.get('scenarios')} scenarios passed, "
          f"TTFA p50 {summary.get('ttfaP50Ms')} ms")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert summary["scenariosPassed"] == summary["scenarios"] == len(SCENARIOS_KEPT)
    assert summary["failedExpectations"] == 0
