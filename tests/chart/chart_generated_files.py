"""Files of charts/voxfleet generated from voxfleet's own code, so the chart never restates a contract by hand:

- files/crds/                            from voxfleet.api (`voxfleet crds --dir charts/voxfleet/files/crds`);
                                         templates/crds.yaml renders them (crds.enabled, crds.keep)
- files/tenant-deletion-policy.json     from voxfleet.operator.tenant_deletion_policy (the chart installs the
                                         policy, so `helm uninstall` removes it and the operator needs no rights
                                         on admission policies)

`python -m tests.chart.chart_generated_files` rewrites them; tests fail when they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from voxfleet.api.crd import write_crds

CHART = Path(__file__).resolve().parents[2] / "charts" / "voxfleet"
CRDS_DIR = CHART / "files" / "crds"  # not crds/: Helm installs that folder once and never upgrades it
POLICY_FILE = CHART / "files" / "tenant-deletion-policy.json"


def tenant_deletion_policy_json() -> str:
    from voxfleet.operator.tenant_deletion_policy import build_tenant_deletion_policy

    return json.dumps(build_tenant_deletion_policy(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    for path in write_crds(CRDS_DIR):
        print(f"wrote {path}")
    POLICY_FILE.write_text(tenant_deletion_policy_json())
    print(f"wrote {POLICY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
