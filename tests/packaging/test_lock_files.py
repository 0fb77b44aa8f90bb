"""The lock files in requirements/ hold everything pyproject.toml asks for, at versions its ranges allow.

`make setup` installs requirements/dev.lock with `--require-hashes` and then voxfleet itself with `--no-deps`, and
the image does the same with requirements/image.lock: a requirement added to pyproject.toml without `make lock`
would be missing at run time, not at install time. Each lock is walked from voxfleet[its extras] through the
requirements of the installed distributions (markers evaluated for this machine); every package reached must be
pinned in the lock at a version its requirer accepts, and installed here at that version (this venv is what the
tests ran against).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.packaging import import_scan

ROOT = import_scan.ROOT
LOCKS = {  # lock file -> the extras it installs
    "requirements/dev.lock": ["all", "test"],
    "requirements/image.lock": ["operator", "gateway", "worker"],
    "requirements/eval.lock": ["eval"],
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def read_lock(path: Path) -> dict[str, str]:
    """name -> pinned version, for the pins whose markers hold on this machine."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if not match:
            continue
        name, version, marker = match.groups()
        if marker and not Requirement(f"x; {marker}").marker.evaluate():
            continue
        pins[canonicalize_name(name)] = version
    return pins


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    environment = default_environment()
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras | {""})


def walk(extras: list[str]) -> list[tuple[Requirement, str]]:
    """Every requirement reachable from voxfleet[extras], with who asked for it."""
    optional = import_scan.PYPROJECT["project"]["optional-dependencies"]
    entries = list(import_scan.PYPROJECT["project"]["dependencies"])
    for extra in import_scan.extras_closure(extras):
        entries += optional[extra]
    pending = [(Requirement(entry), "voxfleet") for entry in entries]
    pending = [(requirement, by) for requirement, by in pending if canonicalize_name(requirement.name) != "voxfleet"]
    reached: list[tuple[Requirement, str]] = []
    expanded: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, by = pending.pop()
        reached.append((requirement, by))
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in expanded:
            continue
        expanded.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # reported by the caller as not installed
        for entry in requires:
            child = Requirement(entry)
            if _applies(child, set(requirement.extras)):
                pending.append((child, name))
    return reached


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_holds_every_requirement_at_an_accepted_version(lock: str):
    pins = read_lock(ROOT / lock)
    reached = walk(LOCKS[lock])
    problems = []
    for requirement, by in reached:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} (required by {by}) is not in {lock}")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{lock} pins {name}=={pins[name]}, but {by} requires {requirement}")
        else:
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed = None
            if lock == "requirements/dev.lock" and installed != pins[name]:
                problems.append(f"{name} is installed at {installed}, {lock} pins {pins[name]} (run make setup)")
    print(f"{lock}: {len(pins)} pins for this platform, {len({canonicalize_name(r.name) for r, _ in reached})} "
          f"packages reached from voxfleet[{','.join(LOCKS[lock])}]")
    assert not problems, "\n".join(sorted(set(problems)) + ["regenerate with `make lock`"])


def test_every_pin_carries_hashes():
    """`pip install --require-hashes` refuses a lock with a bare pin; say which file and line instead."""
    for lock in LOCKS:
        lines = (ROOT / lock).read_text().splitlines()
        bare = [line for index, line in enumerate(lines) if PIN.match(line)
                and not (index + 1 < len(lines) and "--hash=" in lines[index + 1])]
        assert not bare, f"{lock}: pins without a hash: {bare[:5]}"


def test_the_eval_lock_has_none_of_the_heavy_stacks():
    pins = read_lock(ROOT / "requirements/eval.lock")
    heavy = sorted(set(pins) & {"pipecat-ai", "kopf", "onnxruntime", "kubernetes", "fastapi", "torch"})
    print(f"requirements/eval.lock: {len(pins)} packages")
    assert not heavy, f"the eval install would pull {heavy}"
