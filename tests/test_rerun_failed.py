"""`make test`'s rerun (tests/rerun_failed.py), on a tiny suite of its own: a test that fails once and then passes
is named FLAKY and passes the run; a test that fails again fails it; too many failures are not rerun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tests.rerun_failed as rerun_failed

SUITE = '''
from pathlib import Path
def test_flaky():
    marker = Path(__file__).parent / "seen"
    if not marker.exists():
        marker.touch()
        raise AssertionError("lost a race once")
def test_steady():
    pass
'''


def _suite(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").touch()
    (tmp_path / "tests" / "rerun_failed.py").write_text(Path(rerun_failed.__file__).read_text())
    (tmp_path / "tests" / "test_tiny.py").write_text(SUITE + extra)
    (tmp_path / "run").mkdir()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "tests"], cwd=tmp_path,
                   capture_output=True, check=False)
    return tmp_path


def _rerun(suite: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.rerun_failed", "run"], cwd=suite, capture_output=True,
                          text=True, check=False)


def test_a_test_that_passes_on_its_rerun_is_named_flaky_and_passes_the_run(tmp_path):
    result = _rerun(_suite(tmp_path))
    print(f"the tiny suite's rerun: {result.stdout.splitlines()[-1].split(':')[0].lower()} (exit {result.returncode})")
    assert result.returncode == 0, result.stdout
    assert "FLAKY (failed once, passed on rerun): tests.test_tiny::test_flaky" in result.stdout
    assert "test_steady" not in result.stdout  # only failed tests run again


def test_a_test_that_fails_again_fails_the_run(tmp_path):
    result = _rerun(_suite(tmp_path, "def test_broken():\n    assert False\n"))
    assert result.returncode != 0
    assert "FAILED AGAIN: tests.test_tiny::test_broken" in result.stdout
    assert "FLAKY (failed once, passed on rerun): tests.test_tiny::test_flaky" in result.stdout


def test_more_failures_than_flakes_explain_are_not_rerun(tmp_path):
    broken = "".join(f"def test_broken_{n}():\n    assert False\n" for n in range(rerun_failed.MAX_RERUNS))
    result = _rerun(_suite(tmp_path, broken))
    assert result.returncode != 0
    assert "not rerun" in result.stdout and "FLAKY" not in result.stdout
