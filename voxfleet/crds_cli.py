"""`voxfleet crds`: write crds/ from the API models, or check that the checked-in copy is current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voxfleet.api.crd import all_crds, render, write_crds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voxfleet crds", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path("crds"), help="output directory (default: crds)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the directory differs from the models")
    args = parser.parse_args(argv)
    if args.check:
        stale = [name for name, crd in all_crds().items()
                 if not (args.dir / name).exists() or (args.dir / name).read_text() != render(crd)]
        for name in stale:
            print(f"{args.dir / name} is stale: run `voxfleet crds`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_crds(args.dir):
        print(f"wrote {path}")
    return 0
