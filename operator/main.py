"""`voxfleet operator`: run the operator (Tenants and VoiceAgents -> namespaces and warm worker pools).

Settings come from the environment (VOXFLEET_* platform settings, VOXFLEET_OPERATOR_* operator settings); the
flags below override the few that are handy on a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from voxfleet.api.settings import PlatformSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxfleet operator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--http-port", type=int, help="port of /healthz, /readyz and /metrics (0: any free one)")
    parser.add_argument("--http-host", help="address of the health and metrics server")
    parser.add_argument("--tenant-selector", help="serve only Tenants with these labels (label selector)")
    parser.add_argument("--identity", help="this replica's leader Lease identity (default: POD_NAME or host-pid)")
    parser.add_argument("--log-format", choices=["json", "console"], help="log renderer (default: json)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    # Imported after argument parsing so `--help` stays instant.
    from voxfleet.operator.app import OperatorApp
    from voxfleet.kube.credentials import Credentials
    from voxfleet.operator.settings import OperatorSettings
    from voxfleet.telemetry.logging_setup import configure_logging

    platform = PlatformSettings()
    overrides = {name: value for name, value in (("http_port", args.http_port), ("http_host", args.http_host),
                                                 ("tenant_selector", args.tenant_selector),
                                                 ("identity", args.identity)) if value is not None}
    settings = OperatorSettings(**overrides)
    configure_logging("operator", log_format=args.log_format or platform.log_format, level=platform.log_level,
                      pod=os.environ.get("POD_NAME"))
    credentials = Credentials.load(args.kubeconfig)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)  # both end cleanly: the Lease is released
        return await OperatorApp(platform, settings, credentials).run(stop)

    return asyncio.run(run())
