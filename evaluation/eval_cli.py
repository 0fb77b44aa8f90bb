"""`voxfleet eval scenarios.yaml`: run a scenario suite as real calls through a voxfleet gateway.

Prints a table per scenario and turn (pass/fail, TTFA, what each side said, why a turn failed), writes a JSON
report (--report) and JUnit XML (--junit), and compares with a saved baseline report (--baseline).

Exit codes: 0 all passed (with --baseline: no regression); 1 an expectation failed (with --baseline: a figure
regressed beyond the suite's tolerances, each named); 2 the suite, baseline or options are invalid.
With --baseline the gate is the comparison, so known failures recorded in the baseline do not fail the build.

Load mode (`--load N --duration D`): N callers place the suite's scenarios back to back for D seconds; prints
caller-heard TTFA p50/p95/p99, failures and 429/503 refusals over time beside a single-caller run of the same
scenarios made just before, and writes them with every call to --report. Exit 1 if any call did not pass.

The gateway URL and API key default to a running `voxfleet dev`'s, else $VOXFLEET_GATEWAY_URL and
$VOXFLEET_API_KEY (prefer the variable to --key: options show in ps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from voxfleet.devplatform.dev_state import DEFAULT_GATEWAY, gateway_and_key


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxfleet eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", nargs="?", type=Path, help="the scenario file (YAML)")
    parser.add_argument("--gateway", default=None, help="gateway URL (default: the running voxfleet dev's, else"
                                                        f" $VOXFLEET_GATEWAY_URL or {DEFAULT_GATEWAY})")
    parser.add_argument("--key", default=None, help="tenant API key (default: $VOXFLEET_API_KEY, else voxfleet dev's)")
    parser.add_argument("--concurrency", "-j", type=int, default=4, help="calls at once (default 4)")
    parser.add_argument("--scenario", action="append", default=[], metavar="NAME",
                        help="run only this scenario (repeat for more)")
    parser.add_argument("--retries", type=int, default=0, metavar="N",
                        help="place a failed scenario again up to N times; it passes (marked flaky) if one attempt"
                             " does (default 0)")
    parser.add_argument("--report", type=Path, default=None, metavar="JSON", help="write the JSON report here")
    parser.add_argument("--junit", type=Path, default=None, metavar="XML", help="write JUnit XML here")
    parser.add_argument("--save-audio", type=Path, default=None, metavar="DIR",
                        help="write each scenario's call as DIR/<scenario>.wav: the caller left, the agent as heard"
                             " right, from the agent's join (the report's timeline zero)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="JSON",
                        help="a saved report to compare with; regressions beyond the tolerances fail the run")
    parser.add_argument("--save-baseline", type=Path, default=None, metavar="JSON",
                        help="also write this run's report as the next baseline")
    parser.add_argument("--tolerance-ttfa-p95-ms", type=float, default=None, metavar="MS",
                        help="override the suite's allowed TTFA p95 rise (ms)")
    parser.add_argument("--tolerance-ttfa-p95-percent", type=float, default=None, metavar="PERCENT",
                        help="override the suite's allowed TTFA p95 rise in percent (the larger allowance counts)")
    parser.add_argument("--tolerance-turn-success-drop", type=float, default=None, metavar="SHARE",
                        help="override the suite's allowed fall of the turn success rate (0.05 = 5 points)")
    parser.add_argument("--tolerance-failed-expectations", type=int, default=None, metavar="N",
                        help="override the suite's allowed rise in failed expectations")
    parser.add_argument("--load", type=int, default=None, metavar="N",
                        help="load mode: N callers place the suite's scenarios back to back for --duration seconds;"
                             " reports caller-heard TTFA p50/p95/p99, failures and 429/503 refusals over time, beside"
                             " the same scenarios placed one at a time just before")
    parser.add_argument("--duration", type=float, default=60.0, metavar="SECONDS",
                        help="how long the load callers keep placing calls (default 60; 5 to 3600)")
    parser.add_argument("--check", action="store_true", help="only validate the suite (and its WAV files); no calls")
    parser.add_argument("--schema", action="store_true", help="print the scenario file JSON Schema and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or per-scenario lines")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--dev-dir", type=Path, default=None, help="the voxfleet dev folder to read defaults from")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.schema:
        from voxfleet.evaluation.scenario_schema import render

        print(render(), end="")
        return 0
    if args.suite is None:
        print("voxfleet eval: name the scenario file, e.g. voxfleet eval examples/scenarios/offline-demo.yaml",
              file=sys.stderr)
        return 2
    from voxfleet.evaluation.baseline import BaselineError, compare, load_baseline
    from voxfleet.evaluation.suite_loader import SuiteError, load_suite

    try:
        loaded = load_suite(args.suite)
        baseline = load_baseline(args.baseline) if args.baseline else None
    except (SuiteError, BaselineError) as error:
        print(f"voxfleet eval: {error}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.scenario) - {s.name for s in loaded.suite.scenarios})
    if unknown:
        print(f"voxfleet eval: no scenario named {', '.join(unknown)} in {args.suite}", file=sys.stderr)
        return 2
    if args.concurrency < 1 or not 0 <= args.retries <= 10:
        print("voxfleet eval: --concurrency must be at least 1 and --retries 0 to 10", file=sys.stderr)
        return 2
    if args.load is not None:
        problem = _load_problem(args)
        if problem:
            print(f"voxfleet eval: {problem}", file=sys.stderr)
            return 2
    if args.check:
        print(f"{args.suite}: {len(loaded.suite.scenarios)} scenario(s) for agent {loaded.suite.agent}, valid")
        return 0
    from voxfleet.evaluation.llm_keys import key_problems

    chosen = [s for s in loaded.suite.scenarios if not args.scenario or s.name in args.scenario]
    missing = key_problems(chosen, loaded.path.parent)
    if missing:
        print(f"voxfleet eval: {args.suite}: no key for the simulated callers' LLM:\n" + "\n".join(
            f"  {problem}" for problem in missing), file=sys.stderr)
        return 2
    gateway, key = gateway_and_key(args.gateway, args.key, args.dev_dir)
    if not key:
        print("voxfleet eval: no API key: set VOXFLEET_API_KEY (or pass --key; voxfleet dev prints one)",
              file=sys.stderr)
        return 2
    try:
        tolerances = _tolerances(loaded.suite.tolerances, args)
    except ValueError as error:
        print(f"voxfleet eval: invalid tolerance: {error}", file=sys.stderr)
        return 2

    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    if args.load is not None:
        return _run_load(loaded, args, gateway, key, color)

    from voxfleet.evaluation.junit_report import write_junit
    from voxfleet.evaluation.suite_runner import planned_turns, run_suite
    from voxfleet.evaluation.terminal_output import ProgressBar, render_report

    progress = ProgressBar(len(chosen), sum(planned_turns(s) for s in chosen), enabled=not args.no_progress)
    try:
        report = asyncio.run(run_suite(loaded, gateway=gateway, api_key=key, concurrency=args.concurrency,
                                       only=args.scenario or None, retries=args.retries, progress=progress,
                                       save_audio=args.save_audio))
    except KeyboardInterrupt:
        return 130
    if baseline is not None:
        report.baseline = compare(report, baseline, tolerances, baseline_name=str(args.baseline))
    print(render_report(report, color=color), flush=True)
    for path in (args.report, args.save_baseline):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report.model_dump(mode="json", by_alias=True), indent=2) + "\n")
    if args.junit is not None:
        write_junit(report, args.junit)
    if baseline is not None:
        return 0 if report.baseline and report.baseline.passed else 1
    return 0 if report.passed else 1



LOAD_ONLY_WITHOUT = {"baseline": "--baseline", "save_baseline": "--save-baseline", "junit": "--junit",
                     "save_audio": "--save-audio"}


def _load_problem(args) -> str | None:
    from voxfleet.evaluation.load_run import MAX_CALLERS

    if not 1 <= args.load <= MAX_CALLERS:
        return f"--load must be 1 to {MAX_CALLERS} callers, not {args.load}"
    if not 5 <= args.duration <= 3600:
        return f"--duration must be 5 to 3600 seconds, not {args.duration:g}"
    clashing = [option for field, option in LOAD_ONLY_WITHOUT.items() if getattr(args, field)]
    if args.retries:
        clashing.append("--retries")
    if clashing:
        return f"--load does not go with {', '.join(clashing)} (a load run's report is its own; see --report)"
    return None


def _run_load(loaded, args, gateway: str, key: str, color: bool) -> int:
    from voxfleet.evaluation.load_run import run_load
    from voxfleet.evaluation.terminal_output import render_load_report

    try:
        report = asyncio.run(run_load(loaded, gateway=gateway, api_key=key, callers=args.load,
                                      duration_s=args.duration, only=args.scenario or None,
                                      progress=not args.no_progress))
    except KeyboardInterrupt:
        return 130
    print(render_load_report(report, color=color), flush=True)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.model_dump(mode="json", by_alias=True), indent=2) + "\n")
    return 0 if report.passed else 1


def _tolerances(suite_tolerances, args):
    """The suite's tolerances with the command line's overrides, validated like the file's."""
    overrides = {"ttfa_p95_increase_ms": args.tolerance_ttfa_p95_ms,
                 "ttfa_p95_increase_percent": args.tolerance_ttfa_p95_percent,
                 "turn_success_rate_drop": args.tolerance_turn_success_drop,
                 "failed_expectations_increase": args.tolerance_failed_expectations}
    merged = {**suite_tolerances.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    return type(suite_tolerances).model_validate(merged)


if __name__ == "__main__":
    sys.exit(main())
