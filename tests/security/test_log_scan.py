"""The whole-run log scan itself (no servers): it finds a recorded secret, raw or base64, in any log file of the
run's folders with the line and what it was, never prints the value, and passes clean logs."""

from __future__ import annotations

import base64
import os
import random
import time

from tests.security import log_scan, secret_ledger


def _run_with_logs(tmp_path, monkeypatch, logs: dict[str, str]):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / log_scan.STARTED_MARKER).touch()
    old = time.time() - 3600
    os.utime(run_dir / log_scan.STARTED_MARKER, (old, old))
    monkeypatch.setenv(secret_ledger.RUN_DIR_ENV, str(run_dir))
    for relative, text in logs.items():
        path = run_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return run_dir


def test_a_secret_in_any_log_is_found_with_its_line_and_never_printed(tmp_path, monkeypatch, capsys):
    key = "vfk_scan0001_" + "S3cr3t-" * 4
    token = "root-token-for-the-scan-test-0123456789"
    run_dir = _run_with_logs(tmp_path, monkeypatch, {
        "pods/tenant-x/worker-0/worker.log": "starting\nready\n" + f"header X-Key: {key}\n",
        "gateway.log": "one\n" + base64.b64encode(token.encode()).decode() + "\n",
        "phase1-junit.xml": "<testcase><system-out>clean</system-out></testcase>",
        "config.yaml": key,  # not a log: configuration may hold secrets on purpose
    })
    secret_ledger.record(key, "API key of tenant x")
    secret_ledger.record(token, log_scan.ROOT_TOKEN_WHAT)

    findings, figures = log_scan.scan_run(run_dir)

    found = {(f.path.name, f.line, f.what) for f in findings}
    assert found == {("worker.log", 3, "API key of tenant x"), ("gateway.log", 2, "worker root token (base64)")}
    assert figures["secrets"] == 2 and figures["files"] >= 3
    assert log_scan.main([str(run_dir)]) == 1
    printed = capsys.readouterr()
    assert "worker.log:3: API key of tenant x" in printed.err
    assert key not in printed.out + printed.err and token not in printed.out + printed.err


def test_clean_logs_pass_and_a_run_without_a_ledger_fails(tmp_path, monkeypatch, capsys):
    run_dir = _run_with_logs(tmp_path, monkeypatch, {"gateway.log": "nothing secret here\n" * 1000})
    assert log_scan.main([str(run_dir)]) == 1  # nothing recorded: the run did not set VOXFLEET_TEST_RUN_DIR
    secret_ledger.record("a-secret-that-is-nowhere-0123", "tenant secret value")
    assert log_scan.main([str(run_dir)]) == 0
    assert "no secret in any log" in capsys.readouterr().out


def test_a_secret_split_across_read_chunks_is_still_found(tmp_path, monkeypatch):
    secret = "chunk-boundary-secret-0123456789"
    monkeypatch.setattr(log_scan, "CHUNK_BYTES", 64)
    path = tmp_path / "big.log"
    path.write_text("x" * 50 + "\n" + "y" * 40 + secret + "\n")
    findings, files, _ = log_scan.scan({secret: "tenant secret value"}, [path])
    assert [(f.line, f.what) for f in findings] == [(2, "tenant secret value")] and files == 1


def test_tens_of_thousands_of_secrets_scan_in_seconds_and_the_last_one_is_still_found(tmp_path):
    """A full run records about 9,000 derived worker tokens, 27,000 forms with their base64: one alternation of
    them all outgrew RE2's DFA, and the scan of a run's 12 MB of logs ran for minutes (on this file: 32 s before,
    4 s in batches); in batches it takes seconds. Random tokens in a log of random tokens are its worst case."""
    rng = random.Random(7)
    secrets = {base64.urlsafe_b64encode(rng.randbytes(32)).decode(): f"token {n}" for n in range(9000)}
    last = list(secrets)[-1]
    log = tmp_path / "worker.log"
    log.write_text("".join(f"token={base64.urlsafe_b64encode(rng.randbytes(32)).decode()} level=info\n"
                           for _ in range(4000)) + f"oops {last}\n")
    started = time.monotonic()
    findings, _, size = log_scan.scan(secrets, [log])
    elapsed = time.monotonic() - started
    print(f"log scan of {len(secrets)} random secrets (27,000 forms) over {size / 1e6:.2f} MB of random tokens:"
          f" {elapsed:.2f} s")
    assert [finding.line for finding in findings] == [4001] and findings[0].what == secrets[last]
    assert elapsed < 60
