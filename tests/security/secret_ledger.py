"""The secrets a test run mints (API keys, worker tokens, tenant secret values, provider keys), written down so a
scan after the run can prove that none of them reached any log (tests/security/log_scan.py).

Harnesses call ``record(value, what)`` where they mint or set a secret. Each process keeps what it recorded in
memory (a module's own scan uses that); when ``VOXFLEET_TEST_RUN_DIR`` names the run's folder (the Makefile sets it
for both pytest phases), every value is also appended to ``<run dir>/minted-secrets/<pid>.jsonl`` (mode 0600,
one file per process, so parallel xdist workers never share a file) for the scan that follows the run.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

RUN_DIR_ENV = "VOXFLEET_TEST_RUN_DIR"
LEDGER_FOLDER = "minted-secrets"
MIN_SECRET_LENGTH = 12  # shorter values would match ordinary text by chance; every minted secret is longer

_minted: dict[str, str] = {}  # value -> what it is ("API key of tenant x")
_lock = threading.Lock()


def record(value: str, what: str) -> str:
    """Note a secret this run minted or set; returns the value, so a harness can wrap where it makes one."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"{what}: a secret shorter than {MIN_SECRET_LENGTH} characters cannot be scanned for")
    with _lock:
        if value in _minted:
            return value
        _minted[value] = what
        run_dir = os.environ.get(RUN_DIR_ENV)
        if run_dir:
            folder = Path(run_dir) / LEDGER_FOLDER
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(folder / f"{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (json.dumps({"what": what, "value": value}) + "\n").encode())
            finally:
                os.close(fd)
    return value


def minted_here() -> dict[str, str]:
    """What this process recorded: value -> what."""
    with _lock:
        return dict(_minted)


def redacted(text: str) -> str:
    """`text` with every secret this process recorded replaced by what it is (`<API key of tenant x>`)."""
    for value, what in minted_here().items():
        if value in text:
            text = text.replace(value, f"<{what}>")
    return text


def read_ledger(run_dir: Path) -> dict[str, str]:
    """Everything every process of a run recorded: value -> what."""
    found: dict[str, str] = {}
    for path in sorted((run_dir / LEDGER_FOLDER).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                found.setdefault(entry["value"], entry["what"])
    return found
