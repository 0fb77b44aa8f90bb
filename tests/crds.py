"""Install the generated CRDs into the test world (server-side apply: idempotent, safe from parallel workers)."""

from __future__ import annotations

from pathlib import Path

CRDS_DIR = Path(__file__).resolve().parents[1] / "crds"


def install_crds(kube) -> None:
    """`kube` is the world's Cluster handle (tests/conftest.py)."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=voxfleet-tests", "-f", str(CRDS_DIR))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR))
