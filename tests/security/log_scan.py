"""No secret in any log of a whole test run: every secret the run minted (tests/security/secret_ledger.py), and
every worker token derived from a recorded root token for a namespace the run used, searched for in every log
file the run wrote.

    python -m tests.security.log_scan RUN_DIR        # after both phases of `make test`; exit 1 on a finding

What counts as the run's logs: every ``*.log`` file written since the run began (``RUN_DIR/started``) under the
world folders (``<tmp>/voxfleet-world-*``: control plane, LiveKit, pod runner, and each worker pod's log under
``pods/<namespace>/<pod>/``), pytest's temporary folders (``<tmp>/pytest-of-<user>``: the gateway, operator and
tool-server logs the harnesses write there; the test collector's OTLP output, ``*.jsonl``) and
``$VOXFLEET_WORLD_DIR``; and pytest's captured output of every
test, passed or failed, in the JUnit XML files of RUN_DIR (``-o junit_logging=all``). Values are searched as
they are and base64-encoded (a Secret's ``data`` as the apiserver returns it). A finding names the file, the
line and what the secret was; the value itself is never printed.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import re2

from tests.security.secret_ledger import LEDGER_FOLDER, read_ledger
from voxfleet.api.worker_credentials import token_for_namespace

STARTED_MARKER = "started"
ROOT_TOKEN_WHAT = "worker root token"  # what harnesses record the platform's root worker token as
CHUNK_BYTES = 8 << 20
BATCH_BYTES = 64 << 10  # of alternation per compiled pattern: small enough for RE2 to keep its DFA


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def encoded_forms(secrets: dict[str, str]) -> dict[bytes, str]:
    """Each secret as bytes, and base64-encoded (standard and URL-safe), each naming what it is."""
    forms: dict[bytes, str] = {}
    for value, what in secrets.items():
        raw = value.encode()
        forms.setdefault(raw, what)
        forms.setdefault(base64.b64encode(raw), f"{what} (base64)")
        forms.setdefault(base64.urlsafe_b64encode(raw), f"{what} (base64)")
    return forms


def derived_worker_tokens(secrets: dict[str, str], namespaces: Iterable[str]) -> dict[str, str]:
    """The per-namespace worker tokens the platform derives from each recorded root token, for every namespace
    the run's worlds ran pods in."""
    roots = [value for value, what in secrets.items() if what.startswith(ROOT_TOKEN_WHAT)]
    derived = {}
    for root in roots:
        for namespace in namespaces:
            derived[token_for_namespace(root, namespace)] = f"worker token of namespace {namespace} (derived)"
    return derived


def run_roots(run_dir: Path) -> list[Path]:
    tmp = Path(tempfile.gettempdir())
    roots = [run_dir, *sorted(tmp.glob("voxfleet-world-*")), *sorted(tmp.glob("pytest-of-*"))]
    if os.environ.get("VOXFLEET_WORLD_DIR"):
        roots.append(Path(os.environ["VOXFLEET_WORLD_DIR"]))
    return [root for root in roots if root.is_dir()]


def log_files(roots: Iterable[Path], since: float) -> Iterator[Path]:
    """Log files written since ``since``: ``*.log`` anywhere, the spans, metrics and logs the test collector
    received (``*.jsonl``, tests/telemetry), and the JUnit XML of pytest's captured output."""
    seen: set[Path] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _: None):
            dirnames[:] = [d for d in dirnames if d != LEDGER_FOLDER]
            for name in filenames:
                if not (name.endswith((".log", ".jsonl")) or (name.endswith(".xml") and "junit" in name)):
                    continue
                path = Path(dirpath) / name
                try:
                    if path in seen or path.stat().st_mtime < since:
                        continue
                except OSError:
                    continue  # removed meanwhile (a namespace's pods going away)
                seen.add(path)
                yield path


def pod_namespaces(roots: Iterable[Path]) -> set[str]:
    """Namespaces the worlds ran pods in (``<world>/pods/<namespace>/``)."""
    found = set()
    for root in roots:
        pods = root / "pods"
        if pods.is_dir():
            found.update(p.name for p in pods.iterdir() if p.is_dir())
    return found


def scan_file(path: Path, patterns: list["re2._Regexp"], forms: dict[bytes, str], longest: int) -> list[Finding]:
    findings: list[Finding] = []
    line = 1
    carry = b""
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                data = carry + chunk
                for pattern in patterns:
                    for match in pattern.finditer(data):
                        if match.end() <= len(carry):
                            continue  # found in the previous round already
                        findings.append(Finding(path, line + data.count(b"\n", 0, match.start())
                                                - carry.count(b"\n"), forms[match.group(0)]))
                line += chunk.count(b"\n")
                carry = data[-longest:] if longest else b""
    except OSError:
        return findings
    return findings


def compiled_batches(ordered: list[bytes]) -> list["re2._Regexp"]:
    """The forms as a few alternations of at most BATCH_BYTES each. One alternation of every form (tens of
    thousands of derived tokens in a full run) outgrows RE2's DFA memory, and RE2 then falls back to a matcher
    that took minutes per run; a few DFAs scan the same bytes in seconds."""
    options = re2.Options()
    options.max_mem = 256 << 20
    batches: list[list[bytes]] = [[]]
    size = 0
    for form in ordered:
        if batches[-1] and size + len(form) > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(form)
        size += len(form) + 1
    return [re2.compile(b"|".join(re2.escape(form) for form in batch), options) for batch in batches]


def scan(secrets: dict[str, str], files: Iterable[Path]) -> tuple[list[Finding], int, int]:
    """(findings, files scanned, bytes scanned) for every secret in ``secrets`` (value -> what)."""
    forms = encoded_forms(secrets)
    if not forms:
        return [], 0, 0
    ordered = sorted(forms, key=len, reverse=True)  # the longest form first, so a value wins over a prefix
    patterns = compiled_batches(ordered)
    longest = max(len(form) for form in ordered) - 1
    findings, count, size = [], 0, 0
    for path in files:
        findings += scan_file(path, patterns, forms, longest)
        count += 1
        try:
            size += path.stat().st_size
        except OSError:
            pass
    return findings, count, size


def scan_run(run_dir: Path) -> tuple[list[Finding], dict[str, int]]:
    marker = run_dir / STARTED_MARKER
    since = marker.stat().st_mtime if marker.exists() else run_dir.stat().st_mtime
    roots = run_roots(run_dir)
    secrets = read_ledger(run_dir)
    derived = derived_worker_tokens(secrets, pod_namespaces(roots))
    findings, files, size = scan({**secrets, **derived}, log_files(roots, since))
    return findings, {"secrets": len(secrets), "derived tokens": len(derived), "files": files, "bytes": size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security.log_scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the run's folder (VOXFLEET_TEST_RUN_DIR of both pytest phases)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    findings, figures = scan_run(args.run_dir)
    print(f"log scan: {figures['secrets']} recorded secrets and {figures['derived tokens']} derived worker tokens"
          f" (each also base64) over {figures['files']} log files ({figures['bytes'] / 1e6:.1f} MB) in"
          f" {time.monotonic() - started:.1f} s")
    if figures["secrets"] == 0:
        print(f"log scan: no secret was recorded in {args.run_dir}/{LEDGER_FOLDER}: was VOXFLEET_TEST_RUN_DIR set"
              " for the test run?", file=sys.stderr)
        return 1
    for finding in findings[:200]:
        print(f"SECRET IN LOG: {finding}", file=sys.stderr)
    if findings:
        print(f"log scan: {len(findings)} occurrence(s) of secrets in logs; each line above names the file, the"
              " line and what leaked (never the value)", file=sys.stderr)
        return 1
    print("log scan: no secret in any log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
