"""Fixtures of the security tests: one hostile-tenant platform per module (tests/security/hostile_platform.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.conftest import module_database  # noqa: F401 (a fixture: the platform's gateway's database)
from tests.security.hostile_platform import HostilePlatform, started


@pytest.fixture(scope="module")
def platform(kube, pods, livekit, installed_crds, tmp_path_factory,
             module_database) -> Iterator[HostilePlatform]:  # noqa: F811
    with started(kube, pods, livekit, tmp_path_factory.mktemp("security-platform"),
                 database_url=module_database) as running:
        yield running


def _record_harness_secrets() -> None:
    """The fixed credentials the test harnesses hand to the platform, for the whole-run log scan (the scan
    derives every namespace's worker token from the root tokens)."""
    from tests.fakes.providers import FAKE_KEY
    from tests.gateway import gateway_process
    from tests.operator import operator_process
    from tests.security import secret_ledger
    from tests.security.log_scan import ROOT_TOKEN_WHAT

    secret_ledger.record(gateway_process.WORKER_TOKEN, f"{ROOT_TOKEN_WHAT} of the gateway tests' harness")
    secret_ledger.record(operator_process.WORKER_TOKEN, f"{ROOT_TOKEN_WHAT} of the operator tests' harness")
    secret_ledger.record(gateway_process.SIGNING_KEY, "the gateway tests' session signing key")
    secret_ledger.record(FAKE_KEY, "the provider key of the fake providers")


_record_harness_secrets()
