"""`voxfleet dev`: run the whole platform locally; Ctrl-C stops everything it started.

    voxfleet dev            start (in the foreground) and print the kubeconfig, an API key, the gateway and
                            playground URLs
    voxfleet dev status     what runs (from another terminal); --json for scripts
    voxfleet dev down       stop a platform whose `voxfleet dev` was killed without cleaning up
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from voxfleet.cli import command_name
from voxfleet.devplatform.dev_state import DevState, default_dev_dir

READY_BANNER = "voxfleet dev is ready"


def _progress(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxfleet dev", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="up", choices=("up", "status", "down"))
    parser.add_argument("--dev-dir", type=Path, default=None,
                        help=f"state folder (default: $VOXFLEET_DEV_DIR or {default_dev_dir()})")
    parser.add_argument("--gateway-port", type=int, default=8000, help="gateway port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--tool-port", type=int, default=None,
                        help="demo tool server port (default 8765, the offline example's; another port is "
                             "written into the applied example)")
    parser.add_argument("--env-file", type=Path, default=None,
                        help="provider keys for the cloud examples (default: .env in the checkout)")
    parser.add_argument("--repo", type=Path, default=None, help="the voxfleet checkout (crds/, examples/)")
    parser.add_argument("--workers-timeout", type=float, default=300.0,
                        help="seconds to wait for warm workers before reporting them not ready")
    parser.add_argument("--json", action="store_true", help="status: machine-readable")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    dev_dir = (args.dev_dir or default_dev_dir()).absolute()
    if args.command == "status":
        return _status(dev_dir, args.json)
    if args.command == "down":
        return _down(dev_dir)
    return _up(dev_dir, args)


def _up(dev_dir: Path, args) -> int:
    from voxfleet.devplatform import demo_tools
    from voxfleet.devplatform.local_platform import (DevFailed, DevOptions, LocalPlatform, find_repo,
                                                     stop_leftovers)
    from voxfleet.world import processes
    from voxfleet.world.binaries import MissingBinary
    from voxfleet.world.processes import ServerFailed

    try:
        previous = DevState.load(dev_dir)
    except (FileNotFoundError, ValueError, TypeError):
        previous = None
    if previous is not None:
        if processes.pid_alive(previous.supervisor_pid):
            print(f"voxfleet dev is already running in {dev_dir} (pid {previous.supervisor_pid}): stop it with Ctrl-C "
                  f"in its terminal, or `{command_name()} dev down`", file=sys.stderr)
            return 1
        _progress(f"cleaning up what an earlier voxfleet dev left running in {dev_dir}")
        stop_leftovers(previous)
    try:
        options = DevOptions(dev_dir=dev_dir, repo=find_repo(args.repo), gateway_port=args.gateway_port,
                             tool_port=args.tool_port or demo_tools.DEFAULT_PORT, env_file=args.env_file,
                             workers_timeout=args.workers_timeout)
    except DevFailed as error:
        print(f"voxfleet dev: {error}", file=sys.stderr)
        return 2

    platform = LocalPlatform(options, _progress)
    stopping: list[int] = []

    def on_signal(signum, _frame):
        if stopping:
            _progress("still stopping, please wait")
            return
        stopping.append(signum)
        raise KeyboardInterrupt  # unwinds whatever step runs now into the one cleanup below

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    code = 0
    try:
        state = platform.start()
        _print_ready(platform, state)
        dead: list[str] = []
        while not dead:
            time.sleep(0.5)
            dead = platform.dead_processes()
        _progress(f"{', '.join(dead)} exited; stopping everything (logs in {dev_dir / 'logs'} and "
                  f"{state.world_dir}/logs)")
        code = 1
    except KeyboardInterrupt:
        stopping.append(signal.SIGINT)
        _progress("stopping (Ctrl-C)")
    except (DevFailed, ServerFailed, MissingBinary) as error:
        stopping.append(0)
        print(f"voxfleet dev failed: {error}", file=sys.stderr)
        code = 1
    finally:
        stopping.append(0)  # from here on, signals only get "still stopping"
        seconds = platform.stop()
        _progress(f"stopped everything it started in {seconds:.1f} s")
    return code


def _print_ready(platform, state: DevState) -> None:
    width = max(map(len, platform.summary), default=0)
    voxfleet = command_name()  # works in another terminal: the script's path when the venv isn't on PATH
    lines = [f"{READY_BANNER} (Ctrl-C stops everything):"]
    lines += [f"  {name:<{width}}  {value}" for name, value in platform.summary.items()]
    lines += ["", f"  export KUBECONFIG={state.kubeconfig}",
              f"  {_kubectl()} get voiceagents -A"]
    if "playground" in platform.summary:
        lines.append("  open the playground URL above in a browser, pick an agent and press Call")
    if state.gateway_url:
        lines.append(f'  {voxfleet} call concierge --say "what are your opening hours"')
    dev_dir = "" if state.dev_dir == str(default_dev_dir()) else f" --dev-dir {state.dev_dir}"
    lines.append(f"  {voxfleet} dev status{dev_dir}")
    for note in platform.notes:
        lines.append(f"  note: {note}")
    print("\n".join(lines), flush=True)


def _status(dev_dir: Path, as_json: bool) -> int:
    from voxfleet.devplatform.local_platform import as_json as to_json
    from voxfleet.devplatform.local_platform import describe

    try:
        state = DevState.load(dev_dir)
    except (FileNotFoundError, ValueError, TypeError):
        print(to_json({"running": False, "devDir": str(dev_dir)}) if as_json else f"voxfleet dev is not running "
                                                                                   f"in {dev_dir}")
        return 1
    status = describe(state)
    if as_json:
        print(to_json(status))
        return 0 if status["running"] else 1
    print(f"voxfleet dev in {dev_dir}: {state.phase}{'' if status['running'] else ' (DEGRADED)'} "
          f"(pid {state.supervisor_pid}{'' if status['supervisor']['alive'] else ', gone'})")
    for name, alive in status["processes"].items():
        print(f"  {name:26} {'up' if alive else 'DOWN'}")
    for name, alive in (status["world"].get("processes") or {}).items():
        print(f"  {name:26} {'up' if alive else 'DOWN'}")
    if "nodes" in status["world"]:
        print(f"  nodes ready: {status['world']['nodes_ready']}/{status['world']['nodes']}")
    if state.gateway_url:
        print(f"  gateway:    {state.gateway_url} ({'ready' if status.get('gatewayReady') else 'NOT READY'})")
    if state.playground_url:
        print(f"  playground: {state.playground_url} (API key in {state.api_key_file})")
    print(f"  KUBECONFIG={state.kubeconfig}")
    for agent, regions in status["agents"].items():
        figures = ", ".join(f"{region} {f['ready']}/{f['minWorkers']} ready" for region, f in regions.items())
        print(f"  agent {agent}: {figures or 'no status yet'}")
    return 0 if status["running"] else 1


def _down(dev_dir: Path) -> int:
    from voxfleet.devplatform.local_platform import stop_leftovers
    from voxfleet.world import processes

    try:
        state = DevState.load(dev_dir)
    except (FileNotFoundError, ValueError, TypeError):
        _progress(f"nothing to stop in {dev_dir}")
        return 0
    if processes.pid_alive(state.supervisor_pid):
        _progress(f"asking voxfleet dev (pid {state.supervisor_pid}) to stop")
        os.kill(state.supervisor_pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while processes.pid_alive(state.supervisor_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not processes.pid_alive(state.supervisor_pid):
            _progress("stopped")
            return 0
    seconds = stop_leftovers(state)
    _progress(f"stopped what was left in {seconds:.1f} s")
    return 0


def _kubectl() -> str:
    """The kubectl that talks to this cluster: on a fresh machine only the one built into the cache exists."""
    from voxfleet.world import binaries

    try:
        path = binaries.find("kubectl", build=False).path
    except Exception:  # noqa: BLE001 - a hint line, not worth failing the platform over
        return "kubectl"
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
