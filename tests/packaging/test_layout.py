"""The repository's layout as Python sees it.

Each top-level folder (api/, operator/, ...) is mapped to voxfleet.<name> by package-dir in pyproject.toml. None
of them, and not voxfleet/ either, has an `__init__.py`: they are namespace portions, which Python uses only when
no real module of that name exists anywhere on sys.path. With the repository root on sys.path (any `python -m ...`
run from there, pytest's rootdir insertion), a regular `operator/` package used to shadow the standard library's
`operator` (`python -m pip install -e .` died with "cannot import name 'eq' from 'operator'"). voxfleet/ is a
namespace too because setuptools' editable finder resolves a namespace sub-package (voxfleet.operator) only below a
namespace parent.

The image installs voxfleet from a built wheel, not from this folder: every Python package must be in it. Package
folders are listed one by one in [tool.setuptools] packages, so a new sub-package folder that isn't listed is
silently left out of the wheel and of the image, while an editable install here still finds it.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _python_folders(base: Path) -> list[Path]:
    """Folders under base (itself included) that hold Python modules, skipping caches."""
    folders = {path.parent for path in base.rglob("*.py") if "__pycache__" not in path.parts}
    return sorted(folders)


def test_no_mapped_folder_is_a_regular_package():
    regular = [folder for folder in SETUPTOOLS["package-dir"].values() if (ROOT / folder / "__init__.py").exists()]
    assert not regular, (
        f"these folders have an __init__.py, so with the repository root on sys.path they import as top-level "
        f"packages (and `operator` shadows the standard library's): {regular}; keep them namespace portions "
        f"(see {Path(__file__).relative_to(ROOT)})")


def test_every_package_folder_is_listed_for_the_wheel():
    listed = set(SETUPTOOLS["packages"])
    missing = []
    for package, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for found in _python_folders(base):
            name = ".".join((package, *found.relative_to(base).parts))
            if name not in listed:
                missing.append(name)
    assert not missing, f"packages missing from pyproject.toml [tool.setuptools] packages: {missing}"


def test_every_data_file_a_package_ships_is_in_package_data():
    """Files a package reads at run time (schemas, scripts) reach the wheel only through package-data."""
    patterns = SETUPTOOLS.get("package-data", {})
    missing = []
    for package, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc", ".md") or "__pycache__" in path.parts:
                continue
            # a pattern belongs to the package it is declared for and may reach into sub-folders ("otelcol/*")
            parts = path.relative_to(base).parts
            declared = ((".".join((package, *parts[:depth])), "/".join(parts[depth:])) for depth in range(len(parts)))
            if not any(fnmatch.fnmatch(relative, glob) for owner, relative in declared
                       for glob in patterns.get(owner, [])):
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"data files missing from pyproject.toml [tool.setuptools.package-data]: {missing}"


# Run from the root with the root first on sys.path, as `python -m ...` does there: every standard library module
# and every installed distribution's top-level module must still come from outside the repository.
_RESOLVE_FROM_ROOT = """
import importlib.util, json, sys
from importlib.metadata import packages_distributions
names = sorted(set(sys.stdlib_module_names) | set(packages_distributions()))
found = {}
for name in names:
    if name.startswith("_") or name in ("antigravity", "this"):
        continue  # private modules; and two that print (or open a browser) when imported
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        continue  # a module of another platform (winreg, ...)
    if spec is not None:
        found[name] = spec.origin or list(spec.submodule_search_locations or [])
print(json.dumps({"path0": sys.path[0], "prefix": sys.prefix, "found": found}))
"""


def _in_repository(location: str, environment: Path) -> bool:
    """A file or folder of this repository; not 'built-in'/'frozen', and not the virtualenv that may live in it."""
    path = Path(location)
    if not path.is_absolute():
        return False
    path = path.resolve()
    return path.is_relative_to(ROOT) and not path.is_relative_to(environment.resolve())


def test_the_root_on_sys_path_shadows_no_module():
    completed = subprocess.run([sys.executable, "-c", _RESOLVE_FROM_ROOT], cwd=ROOT, capture_output=True,
                               text=True, check=True, timeout=120)
    answer = json.loads(completed.stdout)
    assert answer["path0"] == "", "the check must run with the working directory (the root) first on sys.path"
    shadowed = {}
    for name, origin in answer["found"].items():
        locations = [origin] if isinstance(origin, str) else origin
        if any(_in_repository(location, Path(answer["prefix"])) for location in locations):
            shadowed[name] = locations
    # voxfleet itself is ours to resolve from the root (an editable install points there anyway)
    shadowed.pop("voxfleet", None)
    print(f"{len(answer['found'])} standard library and installed top-level modules resolved from the root; "
          f"shadowed by the repository: {sorted(shadowed)}")
    assert not shadowed, f"modules the repository root shadows: {shadowed}"
