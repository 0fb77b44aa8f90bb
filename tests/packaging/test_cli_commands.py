"""`voxfleet --version`, and the command name the CLI's hints print (`voxfleet dev`'s ready lines): it must run
as printed in a new shell, from any folder, whether or not the venv is on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
PRINT_NAME = "from voxfleet.cli import command_name; print(command_name())"


def _new_shell_env(with_venv_on_path: bool) -> dict[str, str]:
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != VENV_BIN.resolve()]
    if with_venv_on_path:
        path.insert(0, str(VENV_BIN))
    return {"PATH": os.pathsep.join(path or ["/usr/bin", "/bin"]), "HOME": os.environ.get("HOME", "/root")}


def test_version_is_the_installed_distributions():
    result = subprocess.run([str(VENV_BIN / "voxfleet"), "--version"], capture_output=True, text=True, timeout=60)
    print(result.stdout.strip())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"voxfleet {metadata.version('voxfleet')}"


def test_the_printed_command_runs_in_a_new_shell_from_another_folder(tmp_path):
    for with_venv in (False, True):
        env = _new_shell_env(with_venv)
        name = subprocess.run([sys.executable, "-c", PRINT_NAME], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=60, check=True).stdout.strip()
        print(f"venv on PATH: {with_venv}: hints print {name!r}")
        assert (name == "voxfleet") == with_venv, name
        # as a person would paste it: through a shell, elsewhere, with nothing activated
        ran = subprocess.run(["bash", "-c", f"{name} --version"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=60)
        assert ran.returncode == 0 and ran.stdout.startswith("voxfleet "), ran.stderr
