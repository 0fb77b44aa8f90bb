"""Install the generated CRDs into the test world (server-side apply: idempotent, safe from parallel workers)."""

from __future__ import annotations

import time
from pathlib import Path

CRDS_DIR = Path(__file__).resolve().parents[1] / "crds"


def install_crds(kube, timeout: float = 60.0) -> None:
    """`kube` is the world's Cluster handle (tests/conftest.py)."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=voxfleet-tests", "-f", str(CRDS_DIR))
    deadline = time.monotonic() + timeout
    while True:
        # `kubectl wait` errors (rather than waits) while a just-created CRD has no status.conditions yet.
        waited = kube.kubectl("wait", "--for=condition=Established", "--timeout=10s", "-f", str(CRDS_DIR),
                              check=False)
        if waited.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRDs not Established after {timeout:.0f} s: {waited.stderr.strip()}")
        time.sleep(0.5)
