"""The `voxfleet` command. Each subcommand imports its component only when run, so `voxfleet gateway --help`
never loads Pipecat and `voxfleet crds` needs no cluster."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

# subcommand -> (module:function taking argv and returning an exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("voxfleet.operator.main:main", "run the kopf operator (Tenants and VoiceAgents -> warm pools)"),
    "gateway": ("voxfleet.gateway.main:main", "run the REST gateway (tenant API, sessions, LiveKit webhooks)"),
    "worker": ("voxfleet.worker.main:main", "run a warm worker process (Pipecat pipelines in LiveKit rooms)"),
    "keys": ("voxfleet.gateway.keys_cli:main", "create, list and revoke tenant API keys"),
    "call": ("voxfleet.devplatform.caller_cli:main", "call an agent from the terminal and time its answers"),
    "dev": ("voxfleet.devplatform.dev_cli:main", "run the whole platform locally (test world, LiveKit, operator, gateway)"),
    "eval": ("voxfleet.evaluation.eval_cli:main", "run scenario tests of an agent as real calls (JUnit, JSON, baseline)"),
    "cluster": ("voxfleet.world.cli:cluster_main", "start/stop the local test world of real servers"),
    "crds": ("voxfleet.crds_cli:main", "regenerate crds/ from the API models (or --check that it is current)"),
}

# Commands a person runs in a terminal: their own log lines (the LiveKit SDK's, a caller's warning) are readable
# lines on stderr, so stdout carries only what the command answers. The services configure their own logging.
TERMINAL_COMMANDS = {"keys", "call", "dev", "eval", "cluster", "crds"}

# Commands that end with LiveKit's native runtime (tokio threads) still alive. Python's interpreter teardown can
# race those threads, which then abort the process ("panic in a function that cannot unwind", SIGABRT) after
# the command has done and printed everything; these commands skip that teardown and exit with their own code.
ENDS_WITH_NATIVE_THREADS = {"call", "eval"}


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: voxfleet <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    lines += ["", "Run `voxfleet <command> --help` for a command's options."]
    return "\n".join(lines)


def _load(target: str) -> Callable[[list[str]], int] | None:
    module_name, function_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            return None  # the component is not built yet
        raise
    return getattr(module, function_name)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"voxfleet: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    entry = _load(SUBCOMMANDS[name][0])
    if entry is None:
        print(f"voxfleet {name}: not available in this build yet", file=sys.stderr)
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
