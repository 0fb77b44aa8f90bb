"""A new virtualenv, and the two commands a new contributor types from the repository root:
`python -m pip install -e .` and `python -m pytest --co`.

Both run with the root first on sys.path (`python -m` puts the working directory there). With a regular
`operator/` package at the root, the first died in pip's own imports ("cannot import name 'eq' from 'operator'").

The new venv's site-packages starts as hard links of this venv's third-party packages (the locked dependencies,
minus voxfleet itself): downloading ~1 GB of wheels again would take minutes and prove nothing about the layout;
`make setup` on a fresh clone installs them from requirements/dev.lock, as CI does. Everything voxfleet-specific
(the editable install, its import finder, its metadata) is made by the command under test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])


def _is_voxfleets_own(name: str) -> bool:
    return name.startswith(("voxfleet-", "__editable__", "__editable___voxfleet")) or name == "voxfleet.egg-link"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def _new_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    for entry in SITE_PACKAGES.iterdir():
        if _is_voxfleets_own(entry.name) or (target / entry.name).exists():
            continue  # voxfleet is what the test installs; pip and setuptools come with the new venv
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(str(entry), str(target / entry.name))
    return python


def _clean_env() -> dict[str, str]:
    """As a new shell: no virtualenv active, nothing of this run's Python settings."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "PYTEST", "VIRTUAL_ENV", "VOXFLEET_TEST"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not Path(p).resolve().is_relative_to(Path(sys.prefix).resolve()))
    return env


@pytest.mark.timeout(900)
def test_install_and_collect_from_the_root_in_a_new_venv(tmp_path):
    started = time.monotonic()
    python = _new_venv(tmp_path / "venv")
    made = time.monotonic() - started

    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-e", "."], cwd=ROOT,
                             env=_clean_env(), capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, f"pip install -e . failed:\n{install.stdout[-3000:]}{install.stderr[-3000:]}"
    installed = time.monotonic() - started - made

    where = subprocess.run([str(python), "-c", "import operator, voxfleet.operator.scaling as s; "
                            "print(operator.__file__); print(s.__file__)"], cwd=ROOT, env=_clean_env(),
                           capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    stdlib_operator, voxfleet_module = where.stdout.split()
    assert not Path(stdlib_operator).is_relative_to(ROOT), f"the root shadows the stdlib: {stdlib_operator}"
    assert Path(voxfleet_module) == ROOT / "operator" / "scaling.py", "the editable install must point at the tree"

    collect = subprocess.run([str(python), "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                             env=_clean_env(), capture_output=True, text=True, timeout=600)
    collected = time.monotonic() - started - made - installed
    summary = collect.stdout.strip().splitlines()[-1] if collect.stdout.strip() else ""
    print(f"new venv (linked dependencies) {made:.1f} s; `python -m pip install -e .` {installed:.1f} s; "
          f"`python -m pytest --co` {collected:.1f} s: {summary}")
    assert collect.returncode == 0, f"python -m pytest --co failed:\n{collect.stdout[-4000:]}{collect.stderr[-2000:]}"
    count = re.search(r"(\d+) tests? collected", summary)
    assert count and int(count.group(1)) > 500, summary
    assert "error" not in summary.lower(), summary
