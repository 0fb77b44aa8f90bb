"""Fixtures of the eval tests: one eval platform per module (gateway, tenant, tool server) on the shared world."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.eval.eval_platform import EvalPlatform


@pytest.fixture(scope="module")
def eval_platform(kube, pods, livekit, installed_crds, tmp_path_factory) -> Iterator[EvalPlatform]:
    platform = EvalPlatform.start(kube, pods, livekit, tmp_path_factory.mktemp("eval-platform"))
    yield platform
    platform.stop()
