"""Run only by test_failure_reports.py (its name does not start with test_, so the suite never collects it): a test
that fails while a fixture holds a URL with a password, the way `module_database` does."""

import pytest

from tests.security import secret_ledger

PASSWORD = "probe-password-" + "7Qx2LmZr9WfK"  # built, so this file does not hold the literal the probe looks for


@pytest.fixture
def database_like_url() -> str:
    secret_ledger.record(PASSWORD, "probe database password")
    return f"postgresql+asyncpg://voxfleet:{PASSWORD}@127.0.0.1:5432/probe"


def test_fails_holding_a_secret(database_like_url):
    print(f"connecting to {database_like_url}")
    assert database_like_url.endswith("/another")
