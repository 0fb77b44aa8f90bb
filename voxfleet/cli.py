"""The `voxfleet` command. Each subcommand imports its component only when run, so `voxfleet gateway --help`
never loads Pipecat and `voxfleet crds` needs no cluster."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

# subcommand -> (module:function taking argv and returning an exit code, the extra that installs what it imports,
# one-line help). tests/packaging/test_declared_imports.py checks that each command's imports are in its extra.
SUBCOMMANDS: dict[str, tuple[str, str | None, str]] = {
    "operator": ("voxfleet.operator.main:main", "operator",
                 "run the operator (Tenants and VoiceAgents -> warm pools)"),
    "gateway": ("voxfleet.gateway.main:main", "gateway",
                "run the REST gateway (tenant API, sessions, LiveKit webhooks)"),
    "worker": ("voxfleet.worker.main:main", "worker", "run a warm worker process (Pipecat pipelines in LiveKit rooms)"),
    "keys": ("voxfleet.gateway.keys_cli:main", "gateway", "create, list and revoke tenant API keys"),
    "call": ("voxfleet.devplatform.caller_cli:main", "eval", "call an agent from the terminal and time its answers"),
    "dev": ("voxfleet.devplatform.dev_cli:main", "all",
            "run the whole platform locally (test world, LiveKit, operator, gateway)"),
    "eval": ("voxfleet.evaluation.eval_cli:main", "eval",
             "run scenario tests of an agent as real calls (JUnit, JSON, baseline)"),
    "cluster": ("voxfleet.world.cli:cluster_main", "all", "start/stop the local test world of real servers"),
    "db": ("voxfleet.store.db_cli:main", "gateway",
           "apply the store's database migrations (upgrade) or show its revision (current)"),
    "crds": ("voxfleet.crds_cli:main", None, "regenerate crds/ from the API models (or --check that it is current)"),
}

# Commands a person runs in a terminal: their own log lines (the LiveKit SDK's, a caller's warning) are readable
# lines on stderr, so stdout carries only what the command answers. The services configure their own logging.
TERMINAL_COMMANDS = {"keys", "call", "dev", "eval", "cluster", "crds", "db"}

# Commands that end with LiveKit's native runtime (tokio threads) still alive. Python's interpreter teardown can
# race those threads, which then abort the process ("panic in a function that cannot unwind", SIGABRT) after
# the command has done and printed everything; these commands skip that teardown and exit with their own code.
ENDS_WITH_NATIVE_THREADS = {"call", "eval"}


def version() -> str:
    try:
        return metadata.version("voxfleet")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def command_name() -> str:
    """`voxfleet` as a new shell finds it, from any folder: the bare name when PATH leads to this installation,
    else the script's absolute path (e.g. /home/me/voxfleet/.venv/bin/voxfleet). Hints print this."""
    script = Path(sys.executable).with_name("voxfleet")
    on_path = shutil.which("voxfleet")
    if not script.exists() or (on_path and Path(on_path).resolve() == script.resolve()):
        return "voxfleet"
    return str(script.absolute())


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"usage: voxfleet <command> [options]   (voxfleet {version()}; --version)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, _, help_text) in SUBCOMMANDS.items()]
    lines += ["", "Run `voxfleet <command> --help` for a command's options."]
    return "\n".join(lines)


class MissingExtra(Exception):
    """A command's third-party dependencies are not installed: they come with an extra of the voxfleet package."""


def _load(target: str, extra: str | None) -> Callable[[list[str]], int]:
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing == "voxfleet" or not extra:
            raise
        raise MissingExtra(f"needs the {extra!r} extra (no module named {missing!r}): "
                           f"pip install 'voxfleet[{extra}]'") from error
    return getattr(module, function_name)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version", "version"):
        print(f"voxfleet {version()}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"voxfleet: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, extra, _ = SUBCOMMANDS[name]
    try:
        entry = _load(target, extra)
    except MissingExtra as error:
        print(f"voxfleet {name}: {error}", file=sys.stderr)
        return 3
    if name in TERMINAL_COMMANDS:
        from voxfleet.telemetry.logging_setup import configure_logging

        configure_logging(name, log_format="console", level=os.environ.get("VOXFLEET_TOOL_LOG_LEVEL", "warning"))
    code = int(entry(rest) or 0)
    if name in ENDS_WITH_NATIVE_THREADS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
