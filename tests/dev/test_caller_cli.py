"""`voxfleet call` refuses what it cannot do with a line that says what to do, before touching the network."""

from __future__ import annotations

import subprocess
import sys

from voxfleet.world.processes import free_port


def call(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("VOXFLEET_API_KEY", "VOXFLEET_GATEWAY_URL")}
    return subprocess.run([sys.executable, "-m", "voxfleet.cli", "call", *args], capture_output=True, text=True,
                          timeout=60, env={**base, **(env or {})})


def test_without_a_key_it_says_where_to_get_one(tmp_path):
    result = call("concierge", "--dev-dir", str(tmp_path))
    assert result.returncode == 2 and "no API key" in result.stderr and "VOXFLEET_API_KEY" in result.stderr


def test_an_agent_name_that_is_not_a_dns_label_is_refused(tmp_path):
    for bad in ("../v1/keys", "Concierge", "a" * 64):
        result = call(bad, "--key", "vfk_x", "--dev-dir", str(tmp_path))
        assert result.returncode == 2 and "DNS label" in result.stderr, bad


def test_an_unreadable_wav_is_refused_before_calling(tmp_path):
    (tmp_path / "q.wav").write_text("not audio")
    result = call("concierge", "--key", "vfk_x", "--wav", str(tmp_path / "q.wav"), "--dev-dir", str(tmp_path))
    assert result.returncode == 2 and "not a PCM WAV file" in result.stderr


def test_an_unreachable_gateway_is_named(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = call("concierge", "--dev-dir", str(tmp_path), "--gateway", url, env={"VOXFLEET_API_KEY": "vfk_x"})
    assert result.returncode == 1 and f"cannot reach the gateway at {url}" in result.stderr
