"""A failing test's report must not carry a secret: pytest's long traceback prints every fixture's value, and in
CI the JUnit XML that holds it is read by the log scan (a flaky test once failed the run that way, with the
PostgreSQL admin password in a database URL fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.security import failing_report_probe
from tests.security.secret_ledger import RUN_DIR_ENV
from voxfleet.world.postgres import DatabaseUrl

ROOT = Path(__file__).resolve().parents[2]


def test_a_failing_tests_report_names_the_secret_instead_of_showing_it(tmp_path):
    junit = tmp_path / "probe-junit.xml"
    env = {key: value for key, value in os.environ.items() if key != RUN_DIR_ENV}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/security/failing_report_probe.py", "-p", "no:cacheprovider",
         "--tb=long", "-rA", f"--junitxml={junit}", f"--basetemp={tmp_path / 'probe-tmp'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]
    reports = {"terminal": output, "JUnit XML": junit.read_text()}
    for where, text in reports.items():
        assert failing_report_probe.PASSWORD not in text, f"the probe's password is in the {where} report"
        assert "probe database password" in text, f"the {where} report does not name what it hid:\n{text[-2000:]}"
    print(f"failing probe: the terminal ({len(output)} chars) and JUnit ({len(reports['JUnit XML'])} chars) reports"
          f" say <probe database password> {output.count('<probe database password>')}"
          f" and {reports['JUnit XML'].count('probe database password')} times, never the password")


def test_a_database_url_shows_no_password_in_its_repr():
    url = DatabaseUrl("postgresql+asyncpg://voxfleet:s3cret-pass-word@127.0.0.1:5432/m_1")
    assert repr(url) == "'postgresql+asyncpg://voxfleet:***@127.0.0.1:5432/m_1'"
    assert f"{url}" == str(url) == "postgresql+asyncpg://voxfleet:s3cret-pass-word@127.0.0.1:5432/m_1"
    assert repr(DatabaseUrl("postgresql:///local")) == "'postgresql:///local'"
