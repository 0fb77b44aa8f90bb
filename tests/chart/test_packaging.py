"""The image installs voxfleet from a built wheel, not from this folder: every Python package must be in it.

setuptools' `packages` list in pyproject.toml names packages one by one (the folders are mapped with package-dir),
so a new sub-package folder that isn't listed is silently left out of the wheel and of the image, while an
editable install here still finds it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_for_the_wheel():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    missing = []
    for package, folder in setuptools["package-dir"].items():
        base = ROOT / folder
        for init in sorted(base.rglob("__init__.py")):
            parts = init.parent.relative_to(base).parts
            if "__pycache__" in parts:
                continue
            name = ".".join((package, *parts))
            if name not in listed:
                missing.append(name)
    assert not missing, f"packages missing from pyproject.toml [tool.setuptools] packages: {missing}"


def test_every_data_file_a_package_ships_is_in_package_data():
    """Files a package reads at run time (schemas, scripts) reach the wheel only through package-data."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools.get("package-data", {})
    missing = []
    for package, folder in setuptools["package-dir"].items():
        base = ROOT / folder
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc", ".md") or "__pycache__" in path.parts:
                continue
            owner = ".".join((package, *path.parent.relative_to(base).parts))
            if not any(path.match(glob) for glob in patterns.get(owner, [])):
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"data files missing from pyproject.toml [tool.setuptools.package-data]: {missing}"
