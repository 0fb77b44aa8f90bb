"""What voxfleet's source imports, read from the source (ast), and which installed distribution provides it.

Imports count wherever they are (module level or inside a function: a function's import runs when a command
needs it), except those under `if TYPE_CHECKING:` and those guarded by `except ImportError` (optional by design,
e.g. telemetry forwarding Pipecat's loguru lines only when Pipecat is there).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


@dataclass(frozen=True)
class ImportSite:
    module: str  # the dotted name imported, e.g. "livekit.rtc"
    source: Path
    line: int


def _guarded_against_import_error(handlers: list[ast.ExceptHandler]) -> bool:
    for handler in handlers:
        caught = handler.type
        names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError") for name in names):
            return True
    return False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _package_of(path: Path, dotted: str) -> str:
    return dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]


def imports_of(path: Path, dotted: str) -> Iterator[ImportSite]:
    """Absolute dotted names a file imports (relative imports resolved against its package `dotted`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package_of(path, dotted)

    def visit(node: ast.AST) -> Iterator[ImportSite]:
        if isinstance(node, ast.Try) and _guarded_against_import_error(node.handlers):
            for child in node.handlers + node.orelse + node.finalbody:
                yield from visit(child)
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield ImportSite(alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            yield ImportSite(base, path, node.lineno)
            for alias in node.names:  # `from livekit import rtc` imports livekit.rtc (a module or a name in it)
                yield ImportSite(f"{base}.{alias.name}", path, node.lineno)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


def module_file(dotted: str) -> Path | None:
    """The file of a voxfleet module, through pyproject's package-dir mapping (no import)."""
    for package, folder in sorted(PACKAGE_DIRS.items(), key=lambda item: -len(item[0])):
        if dotted == package or dotted.startswith(package + "."):
            rest = dotted[len(package):].lstrip(".").split(".") if dotted != package else []
            base = ROOT / folder / Path(*rest) if rest else ROOT / folder
            if base.with_suffix(".py").is_file():
                return base.with_suffix(".py")
            if (base / "__init__.py").is_file():
                return base / "__init__.py"
            return None
    return None


def product_files() -> Iterator[tuple[Path, str]]:
    """Every module of the voxfleet package, with its dotted name."""
    for package, folder in PACKAGE_DIRS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield path, ".".join((package, *parts))


def is_third_party(module: str, local_names: frozenset[str] = frozenset()) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in sys.stdlib_module_names and top not in ("__future__", "voxfleet", "tests") \
        and top not in local_names


def closure(entry: str) -> tuple[set[str], list[ImportSite]]:
    """The voxfleet modules an entry module can reach through imports, and the third-party imports they make.

    Importing a.b.c runs the __init__ of a.b too: regular parent packages are followed."""
    seen: set[str] = set()
    third_party: list[ImportSite] = []
    pending = [entry]
    while pending:
        dotted = pending.pop()
        if dotted in seen:
            continue
        seen.add(dotted)
        path = module_file(dotted)
        if path is None:
            continue
        for site in imports_of(path, dotted):
            if site.module.split(".")[0] == "voxfleet":
                parts = site.module.split(".")
                pending.extend(".".join(parts[:i]) for i in range(2, len(parts) + 1))
            elif is_third_party(site.module):
                third_party.append(site)
    return {name for name in seen if module_file(name)}, third_party


@cache
def _module_owners() -> dict[str, frozenset[str]]:
    """dotted package/module name -> canonical names of the installed distributions whose files hold it."""
    owners: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".egg-info", ".data")) or parts[0] == "..":
                continue
            if not file.name.endswith((".py", ".so", ".pyd", ".pyi")):
                continue
            module_parts = list(parts[:-1]) + ([file.name.split(".")[0]] if file.name != "__init__.py" else [])
            for depth in range(1, len(module_parts) + 1):
                owners.setdefault(".".join(module_parts[:depth]), set()).add(name)
    return {module: frozenset(names) for module, names in owners.items()}


def distribution_of(module: str) -> frozenset[str]:
    """The distributions providing an imported name: the longest prefix of it that some distribution ships
    (`livekit.rtc` -> livekit, `livekit.api` -> livekit-api; `from x import name` falls back to x)."""
    owners = _module_owners()
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        found = owners.get(".".join(parts[:depth]))
        if found:
            return found
    return frozenset()


def extras_closure(extras: list[str] | None) -> set[str]:
    """The extras named, plus those they pull in through `voxfleet[...]` (None: every extra)."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    pending = list(optional) if extras is None else list(extras)
    done: set[str] = set()
    while pending:
        extra = pending.pop()
        if extra in done:
            continue
        done.add(extra)
        for entry in optional[extra]:
            requirement = Requirement(entry)
            if canonicalize_name(requirement.name) == "voxfleet":
                pending.extend(requirement.extras)
    return done


def declared(extras: list[str] | None) -> set[str]:
    """Canonical distribution names declared by the base dependencies plus the given extras (None: all)."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    entries = list(PYPROJECT["project"]["dependencies"])
    for extra in extras_closure(extras):
        entries += optional[extra]
    names = {canonicalize_name(Requirement(entry).name) for entry in entries}
    return names - {"voxfleet"}
