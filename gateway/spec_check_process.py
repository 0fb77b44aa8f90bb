"""The gateway's spec-checking child (see spec_checker.py): one JSON spec per line on stdin, one SpecOutcome per
line on stdout, until stdin closes. Nothing else is written to stdout."""

from __future__ import annotations

import json
import sys

from voxfleet.gateway.agent_writes import spec_outcome


def main() -> None:
    for line in sys.stdin.buffer:
        outcome = spec_outcome(json.loads(line))
        sys.stdout.write(json.dumps(outcome.to_wire(), separators=(",", ":")) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
