"""The gateway's spec-checking child (see spec_checker.py): one JSON spec per line on stdin, one SpecOutcome per
line on stdout, until stdin closes. Nothing else is written to stdout.

It runs at a lower CPU priority (nice 10): checking is batch work for one tenant's write, and when the cores are
busy the gateway's event loop (every tenant's requests) should get them first."""

from __future__ import annotations

import json
import os
import sys

from voxfleet.gateway.agent_writes import spec_outcome


def main() -> None:
    os.nice(10)
    for line in sys.stdin.buffer:
        outcome = spec_outcome(json.loads(line))
        sys.stdout.write(json.dumps(outcome.to_wire(), separators=(",", ":")) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
