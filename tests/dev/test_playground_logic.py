"""The playground's own logic (TTFA per turn from audio levels, transcript segments, the recent calls list and a
call's report), run with node's test runner;
its behaviour in a browser is tested against the running platform in test_dev_platform.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PLAYGROUND = Path(__file__).resolve().parents[2] / "playground"


def test_the_pages_turn_timer_transcript_and_recent_calls_logic_pass_their_node_tests():
    node = shutil.which("node")
    assert node, "node is needed to build and test the playground (make setup installs it with npm)"
    result = subprocess.run([node, "--test", "test/"], cwd=PLAYGROUND, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass 10" in result.stdout, result.stdout
