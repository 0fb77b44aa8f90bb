"""Run a script or module with every voxfleet.* package taken from another checkout (a same-run baseline).

    .venv/bin/python bench/in_tree.py /tmp/base-gw -m voxfleet.gateway.main --port 8080 ...
    .venv/bin/python bench/in_tree.py /tmp/base-gw /tmp/base-gw/bench/gateway_bench.py --seconds 10

The editable install maps voxfleet.<name> to this checkout's top-level folders through one finder; pointing
that mapping at the other tree before any voxfleet import is all it takes, with no second venv. The first line
on stderr names the folder voxfleet.gateway came from, so a benchmark can prove which code it measured.
Child Python processes (the gateway's spec checker, the world's servers and worker pods) take the same tree: a
sitecustomize on PYTHONPATH repeats the mapping in every interpreter that inherits the environment.
"""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
from pathlib import Path

TREE_ENV = "VOXFLEET_CODE_TREE"


def point_voxfleet_at(tree: str) -> None:
    finders = [module for name, module in list(sys.modules.items()) if name.startswith("__editable___voxfleet")]
    if not finders:
        raise SystemExit("in_tree: voxfleet is not an editable install in this interpreter")
    def moved(path: str) -> str:
        return f"{tree.rstrip('/')}/{path.rstrip('/').rsplit('/', 1)[1]}"

    for finder in finders:  # regular packages (MAPPING) and PEP 420 portions (NAMESPACES) alike
        for package, path in list(finder.MAPPING.items()):
            finder.MAPPING[package] = moved(path)
        for package, paths in list(getattr(finder, "NAMESPACES", {}).items()):
            finder.NAMESPACES[package] = [moved(path) for path in paths]


def inherit_in_children(tree: str) -> None:
    site = Path(tempfile.mkdtemp(prefix="voxfleet-in-tree-"))
    (site / "sitecustomize.py").write_text(
        f"import os, sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport in_tree\n"
        f"in_tree.point_voxfleet_at(os.environ[{TREE_ENV!r}])\nsys.path.pop(0)\n")
    os.environ[TREE_ENV] = tree
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    tree = sys.argv[1]
    point_voxfleet_at(tree)
    inherit_in_children(tree)
    if any(name.startswith("voxfleet") for name in sys.modules):
        raise SystemExit("in_tree: voxfleet was imported before its mapping changed")
    sys.path.insert(0, tree)  # the tree's tests/ and bench/ helpers too
    import voxfleet.gateway  # noqa: PLC0415 - only now does it resolve into the tree
    # __path__, not __file__: with the folders as PEP 420 portions a package has no __init__.py to name.
    print("gateway code from", f"{list(voxfleet.gateway.__path__)[0]}/", file=sys.stderr, flush=True)
    if sys.argv[2] == "-m":
        module = sys.argv[3]
        sys.argv = [module, *sys.argv[4:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = sys.argv[2]
        sys.argv = [script, *sys.argv[3:]]
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
