"""`voxfleet dev` end to end, as a person uses it: start it, use what it prints (kubeconfig, API key, gateway and
playground URLs), call the offline agent from the terminal (`voxfleet call`) and from the playground in headless
Chromium with a fake microphone, see the clear messages for no capacity and a blocked microphone, then Ctrl-C and
check that no process it started is left.

One test, because the platform is one expensive thing (a world, an operator, a gateway, real workers) and each
step needs the previous one; every step says what it checks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.callers.recogniser import Recogniser
from voxfleet.devplatform import speech
from voxfleet.devplatform.dev_cli import READY_BANNER
from voxfleet.devplatform.dev_state import DevState
from voxfleet.world import processes
from voxfleet.world.world import WorldInfo

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--use-fake-device-for-media-stream"]
READY_TIMEOUT_S = 600  # a cold, busy CI machine: world, quota discovery (30 s), operator, gateway, model loading
QUESTION = "what are your opening hours"
HOURS = "We are open every day from nine in the morning to six in the evening."
FALLBACK = "Sorry, I did not catch that. Could you say it again?"


class DevProcess:
    """`voxfleet dev` in the background: stdout lines collected, stderr to a file."""

    def __init__(self, tmp_path: Path):
        self.dev_dir = tmp_path / "dev"
        self.stderr_path = tmp_path / "voxfleet-dev.log"
        self.lines: list[str] = []
        env = {k: v for k, v in os.environ.items() if k not in ("VOXFLEET_WORLD_DIR", "VOXFLEET_DEV_DIR")}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "voxfleet.cli", "dev", "--dev-dir", str(self.dev_dir), "--gateway-port", "0",
             "--tool-port", str(processes.free_port()), "--env-file", str(tmp_path / "no-provider-keys.env")],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"), text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def log_tail(self) -> str:
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-60:])

    def wait_ready(self) -> dict[str, str]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not any(READY_BANNER in line for line in self.lines):
            assert self.popen.poll() is None, f"voxfleet dev exited ({self.popen.returncode}):\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"voxfleet dev not ready in {READY_TIMEOUT_S} s:\n{self.log_tail()}"
            time.sleep(0.5)
        time.sleep(0.5)  # the rest of the summary follows the banner line
        printed = {}
        for line in self.lines:
            match = re.match(r"^  (kubeconfig|gateway|playground|API key \(tenant demo\)|agents)\s{2,}(\S.*)$", line)
            if match:
                printed[match.group(1)] = match.group(2)
        return printed

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        return self.popen.wait(120)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxfleet.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def caller_wav(path: Path) -> Path:
    """What the fake microphone says, over and over (Chromium loops the file): silence through the greeting, the
    question, silence for the answer. A question lost under a slow greeting gets another chance."""
    silence = np.zeros(speech.SAMPLE_RATE, dtype=np.int16)
    return speech.write_wav(path, np.concatenate([silence.repeat(10), speech.synthesize(QUESTION),
                                                  silence.repeat(12)]))


@pytest.mark.world
def test_voxfleet_dev_serves_calls_from_terminal_and_browser_and_ctrl_c_leaves_nothing(tmp_path):
    assert CHROMIUM.exists(), "Debian's chromium is needed (make test installs it: apt-get install chromium)"
    dev = DevProcess(tmp_path)
    state: DevState | None = None
    world: WorldInfo | None = None
    try:
        printed = dev.wait_ready()
        state = DevState.load(dev.dev_dir)
        world = WorldInfo.load(Path(state.world_dir))
        _check_what_it_printed(printed)
        _check_status(dev)
        _check_terminal_call(dev, tmp_path)
        _check_playground(printed, tmp_path)
    finally:
        code = dev.stop()
    _check_nothing_left(state, world, code, dev)


def _check_what_it_printed(printed: dict[str, str]) -> None:
    """The printed kubeconfig, key and URLs work."""
    for name in ("kubeconfig", "gateway", "playground", "API key (tenant demo)"):
        assert name in printed, f"voxfleet dev did not print the {name}: {printed}"
    assert Path(printed["kubeconfig"]).is_file()
    key = printed["API key (tenant demo)"]
    agents = httpx.get(f"{printed['gateway']}/v1/agents", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert agents.status_code == 200, agents.text
    concierge = next(a for a in agents.json()["items"] if a["name"] == "concierge")
    assert concierge["status"]["readyWorkers"] >= 2  # us-east and eu-west each keep one warm
    assert printed["playground"].endswith(f"#key={key}")
    page = httpx.get(printed["playground"].split("#")[0], timeout=10)
    assert page.status_code == 200 and "voxfleet playground" in page.text


def _check_status(dev: DevProcess) -> None:
    """`voxfleet dev status` shows every process up and the agent's warm workers."""
    result = run_cli("dev", "status", "--dev-dir", str(dev.dev_dir), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["running"] and status["gatewayReady"]
    assert set(status["processes"]) == {"demo-tools", "operator", "gateway"}
    assert all(status["world"]["processes"].values())
    regions = status["agents"]["tenant-demo/concierge"]
    assert {r: f["ready"] >= 1 for r, f in regions.items()} == {"us-east": True, "eu-west": True}
    human = run_cli("dev", "status", "--dev-dir", str(dev.dev_dir))
    assert re.search(r"agent tenant-demo/concierge: us-east \d+/1 ready, eu-west \d+/1 ready", human.stdout), \
        human.stdout


def _check_terminal_call(dev: DevProcess, tmp_path: Path) -> None:
    """`voxfleet call` gets the agent's spoken answer (recognised in the saved audio), a TTFA per turn, and both
    sides' text from the transcripts the worker publishes in the room (the offline agent records transcripts)."""
    saved = tmp_path / "agent.wav"
    result = run_cli("call", "concierge", "--dev-dir", str(dev.dev_dir), "--say", QUESTION, "--save-audio",
                     str(saved), "--json", "--answer-timeout", "30", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["greetingHeard"] and summary["asked"] == summary["answered"] == 1, summary
    ttfa_ms = summary["turns"][0]["ttfaMs"]
    assert 100 < ttfa_ms < 15000, summary
    print(f"voxfleet call: TTFA {ttfa_ms} ms as the caller heard it; region {summary['region']}")
    # The saved audio holds the answer where the summary says: recognise it there, as a caller's ear would.
    start, end = summary["turns"][0]["answerInAudioS"]
    recorded = speech.read_wav(saved)
    assert len(recorded) / speech.SAMPLE_RATE >= end
    answer_audio = recorded[int((start - 0.1) * speech.SAMPLE_RATE):int((end + 0.1) * speech.SAMPLE_RATE)]
    answer = Recogniser([HOURS, FALLBACK]).recognise(answer_audio.tobytes())
    assert "we are open every day" in answer, (answer, summary)
    assert summary["greeting"], summary  # the greeting's transcript
    assert summary["turns"][0]["agentText"] == HOURS, summary
    assert summary["turns"][0]["heard"], summary  # what the agent's speech-to-text made of the caller


def _check_playground(printed: dict[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    key = printed["API key (tenant demo)"]
    base, fragment = printed["playground"].split("#", 1)
    wav = caller_wav(tmp_path / "caller-question.wav")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS + [
            "--use-fake-ui-for-media-stream", f"--use-file-for-fake-audio-capture={wav}"])
        try:
            page = browser.new_page()
            page.goto(f"{base}?agent=concierge#{fragment}")
            page.wait_for_function("document.querySelector('#agent').value === 'concierge'", timeout=15000)
            assert key not in page.url  # the key left the address bar (kept for the tab only)
            page.click("#call")
            try:
                page.wait_for_selector("#turns li", timeout=90000)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "playground-no-turn.png"), full_page=True, timeout=120000)
                raise AssertionError(f"no TTFA on the page within 90 s: {_page_state(page)}") from None
            ttfa_ms = int(page.get_attribute("#turns li", "data-ttfa-ms"))
            assert 100 < ttfa_ms < 15000
            print(f"playground: TTFA {ttfa_ms} ms measured in the page")
            # Both sides' live transcript, as the worker publishes it: the agent's answer and the caller's line.
            # The fake microphone asks again every loop of its file (about 24 s), as a caller who was not
            # understood would: a question the browser's audio processing garbled once gets a second chance.
            try:
                page.wait_for_function("[...document.querySelectorAll('#transcript li.agent')].some("
                                       "li => li.textContent.includes('open every day'))", timeout=45000)
                page.wait_for_function("document.querySelectorAll('#transcript li.caller').length > 0",
                                       timeout=15000)
            except Exception:
                raise AssertionError(f"the answer never showed in the page's transcript: {_page_state(page)}"
                                     ) from None
            finally:
                page.screenshot(path=str(ARTIFACTS / "playground-call.png"), full_page=True, timeout=120000)
            lines = page.evaluate("window.voxfleetPlayground.transcript()")
            print(f"playground transcript: {[(line['role'], line['text'][:60]) for line in lines]}")
            session_id = page.evaluate("window.voxfleetPlayground.session().sessionId")
            page.click("#hangup")
            page.wait_for_function("document.querySelector('#status').textContent === 'You hung up.'", timeout=10000)
            assert page.is_enabled("#call")
            _check_recent_calls(page, session_id)

            _add_agent_without_workers(printed)
            page.click("#refresh")
            page.wait_for_selector("#agent option[value='standby']", state="attached", timeout=10000)
            page.select_option("#agent", "standby")
            page.click("#call")
            page.wait_for_selector("#message:not([hidden])", timeout=30000)
            assert "No capacity" in page.inner_text("#message")
            page.screenshot(path=str(ARTIFACTS / "playground-no-capacity.png"), full_page=True, timeout=120000)
        finally:
            browser.close()
        # Without the fake permission UI, nobody allows the microphone: the page must say so and start nothing.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}?agent=concierge#{fragment}")
            page.wait_for_function("document.querySelector('#agent').value === 'concierge'", timeout=15000)
            page.click("#call")
            page.wait_for_selector("#message:not([hidden])", timeout=30000)
            assert "blocked the microphone" in page.inner_text("#message")
            assert page.evaluate("window.voxfleetPlayground.session()") is None  # no session was started
        finally:
            browser.close()


def _check_recent_calls(page, session_id: str) -> None:
    """The browser's call is in Recent calls once the gateway recorded its end (the page looks again 1.5 s and 6 s
    after a hang-up; Refresh here in case the report comes later), and its report, with the turns the worker
    timed, opens on click."""
    def this_call() -> dict | None:
        rows = page.evaluate("window.voxfleetPlayground.recentCalls()")
        return next((row for row in rows if row["sessionId"] == session_id), None)

    deadline = time.monotonic() + 45
    while not ((row := this_call()) and not row["live"] and row["endReason"] != "\u2014"):
        assert time.monotonic() < deadline, f"the call never ended in Recent calls: {_page_state(page)}"
        page.click("#recent-refresh")
        page.wait_for_timeout(1500)
    print(f"playground recent calls, this call: {row}; month: {page.inner_text('#month-usage')}")
    page.click(f"#recent-calls tr[data-session-id='{session_id}']")
    page.wait_for_selector("#call-report:not([hidden])", timeout=10000)
    shown = page.evaluate("window.voxfleetPlayground.shownReport()")
    assert shown["turns"] and shown["turns"][0]["ttfa"].endswith(" ms"), shown
    page.screenshot(path=str(ARTIFACTS / "playground-recent-calls.png"), full_page=True, timeout=120000)


def _page_state(page) -> dict:
    return page.evaluate("({status: document.querySelector('#status').textContent,"
                         " message: document.querySelector('#message').textContent,"
                         " levels: window.voxfleetPlayground.levels(), audio: window.voxfleetPlayground.audioState(),"
                         " session: (s => s && {room: s.room, region: s.region})(window.voxfleetPlayground.session()),"
                         " turns: window.voxfleetPlayground.turns(),"
                         " transcript: window.voxfleetPlayground.transcript(),"
                         " recent: window.voxfleetPlayground.recentCalls && window.voxfleetPlayground.recentCalls()})")


def _add_agent_without_workers(printed: dict[str, str]) -> None:
    """An agent that keeps no warm worker, created through the gateway's agents API: calling it is a 503."""
    spec = {"greeting": "Hi.", "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                                            "tts": {"provider": "espeak"}},
            "intents": [{"name": "bye", "keywords": ["bye"], "reply": "Goodbye."}],
            "regions": [{"name": "us-east", "minWorkers": 0, "maxWorkers": 1}], "scaling": {"bufferSessions": 0}}
    answer = httpx.put(f"{printed['gateway']}/v1/agents/standby", json=spec, timeout=15,
                       headers={"Authorization": f"Bearer {printed['API key (tenant demo)']}"})
    assert answer.status_code in (200, 201), answer.text


def _check_nothing_left(state: DevState | None, world: WorldInfo | None, code: int, dev: DevProcess) -> None:
    """After Ctrl-C: a clean exit, every recorded process gone, and no process carrying the run's marker."""
    assert code == 0, f"voxfleet dev exited {code} after Ctrl-C:\n{dev.log_tail()}"
    assert state is not None and world is not None
    assert "stopped everything it started" in dev.log_tail()
    for name, pid in state.pids.items():
        assert not processes.pid_alive(pid), f"{name} (pid {pid}) survived Ctrl-C"
    for name, pid in world.pids.items():
        assert not processes.pid_alive(pid), f"the world's {name} (pid {pid}) survived Ctrl-C"
    survivors = processes.marked_pids(state.world_id)
    assert survivors == [], f"processes of the run survived Ctrl-C: {survivors}"
    assert not (dev.dev_dir / "dev.json").exists() and not (dev.dev_dir / "api-key").exists()
