"""`make test`'s last chance for a test that failed once: run the tests that failed in the two phases again, one at
a time, and name every one that passes now as FLAKY.

Why: the suite times real audio and races real servers on a shared 2-core machine; a test that loses a race
once in a thousand runs should be fixed, and it is listed for that, but it should not hide what the other
thousand tests proved. A test that fails again fails the run, and so does a run with more failures than a few
flakes explain (then something is broken, not flaky). The rerun's logs join the run folder, so the log scan
reads them too.

    python -m tests.rerun_failed <run dir>     exit 0 when every failed test passed on its rerun
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

MAX_RERUNS = 5  # more failures than this is a broken change, not bad luck
LAST_FAILED = Path(".pytest_cache/v/cache/lastfailed")


def failed_tests() -> list[str]:
    if not LAST_FAILED.exists():
        return []
    recorded = json.loads(LAST_FAILED.read_text())
    # Only tests that still exist (a developer's cache may remember a test since deleted).
    return sorted(node for node, failed in recorded.items() if failed and Path(node.split("::")[0]).exists())


def rerun_outcomes(junit: Path) -> dict[str, bool]:
    """Test name -> passed, from the rerun's JUnit XML."""
    outcomes = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        failed = any(child.tag in ("failure", "error") for child in case)
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = not failed
    return outcomes


def main(run_dir: Path) -> int:
    failed = failed_tests()
    if not failed:
        print("==> rerun: no failed test is on record (a phase broke before its tests ran): nothing to rerun")
        return 1
    if len(failed) > MAX_RERUNS:
        print(f"==> rerun: {len(failed)} tests failed, more than {MAX_RERUNS}: not rerun (a change broke them)")
        return 1
    print(f"==> rerun of the {len(failed)} failed test(s), one at a time:")
    for node in failed:
        print(f"    {node}")
    junit = run_dir / "rerun-junit.xml"
    code = subprocess.call([sys.executable, "-m", "pytest", "-p", "no:xdist", "--durations=5",
                            f"--basetemp={run_dir / 'rerun'}", f"--junitxml={junit}", "-o", "junit_logging=all",
                            *failed])
    if junit.exists():
        for name, passed in sorted(rerun_outcomes(junit).items()):
            print(f"{'FLAKY (failed once, passed on rerun)' if passed else 'FAILED AGAIN'}: {name}")
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
