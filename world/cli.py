"""``voxfleet cluster up|down|status``: the local test world from a terminal (wired into voxfleet/cli.py)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from .processes import ServerFailed
from .world import World, default_state_dir


def _progress(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def cluster_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voxfleet cluster",
                                     description="Run the local test world: Kubernetes control plane, kwok nodes in "
                                                 "three regions, the pod runner, two livekit-servers and PostgreSQL.")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help=f"world folder (default: $VOXFLEET_WORLD_DIR or {default_state_dir()})")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the world")
    up.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
    up.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C stops the world")
    up.add_argument("--simulated-nodes-per-zone", type=int, default=2)
    down = sub.add_parser("down", help="stop the world and every process it started")
    down.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
    status = sub.add_parser("status", help="show what runs")
    status.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
    status.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    world = World(args.state_dir, **({"simulated_per_zone": args.simulated_nodes_per_zone}
                                     if args.command == "up" else {}))
    return {"up": _up, "down": _down, "status": _status}[args.command](world, args)


def _up(world: World, args) -> int:
    try:
        info = world.start(progress=_progress)
    except ServerFailed as e:
        print(f"voxfleet cluster up failed: {e}", file=sys.stderr)
        return 1
    print(f"export KUBECONFIG={info.kubeconfig}")
    for region in info.livekit:
        print(f"# livekit {region['region']}: {region['url']} key={region['api_key']} secret={region['api_secret']}")
    if info.postgres:  # the URL holds the password: say where it is, not what it is
        print(f"# postgresql: 127.0.0.1:{info.postgres['port']} user {info.postgres['user']}; admin URL with its"
              f" password: {info.state_dir}/postgres/postgres.json")
    print(f"# pod logs: {info.pods_dir}/<namespace>/<pod>/<container>.log; server logs: {info.logs_dir}")
    if not args.foreground:
        print(f"# stop with: voxfleet cluster down --state-dir {info.state_dir}")
        return 0
    _progress("running in the foreground; Ctrl-C stops the world")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop and world.running():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    if not world.running():
        _progress("a server exited; stopping the rest (see the logs above)")
    seconds = world.stop()
    _progress(f"stopped in {seconds:.1f} s")
    return 0


def _down(world: World, args) -> int:
    if not (world.state_dir / "world.json").exists():
        _progress(f"no world in {world.state_dir}")
        return 0
    seconds = world.stop()
    _progress(f"stopped in {seconds:.1f} s")
    return 0


def _status(world: World, args) -> int:
    status = world.status()
    if args.json:
        print(json.dumps(status, indent=2))
    elif not status.get("running") and "processes" not in status:
        print(f"no world running in {status['state_dir']}")
    else:
        print(f"world in {status['state_dir']}: {'running' if status['running'] else 'DEGRADED'}")
        for name, alive in status["processes"].items():
            print(f"  {name:26} {'up' if alive else 'DOWN'}")
        if "nodes" in status:
            print(f"  nodes ready: {status['nodes_ready']}/{status['nodes']}")
        print(f"  KUBECONFIG={status['kubeconfig']}")
        for region, url in status["livekit"].items():
            print(f"  livekit {region}: {url}")
    return 0 if status.get("running") else 1


if __name__ == "__main__":
    sys.exit(cluster_main(sys.argv[1:]))
