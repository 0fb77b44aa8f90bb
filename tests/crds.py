"""Install the generated CRDs into the test world (server-side apply: idempotent, safe from parallel workers)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from voxfleet.world import binaries

CRDS_DIR = Path(__file__).resolve().parents[1] / "crds"


def install_crds(kubeconfig: Path | str) -> None:
    kubectl = [str(binaries.find("kubectl").path), "--kubeconfig", str(kubeconfig)]
    for args in (["apply", "--server-side", "--force-conflicts", "--field-manager=voxfleet-tests", "-f", str(CRDS_DIR)],
                 ["wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR)]):
        result = subprocess.run(kubectl + args, capture_output=True, text=True, timeout=90)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:2])} failed: {result.stderr.strip()}")
