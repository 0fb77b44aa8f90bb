"""`voxfleet gateway`: run the REST gateway with uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from pydantic import ValidationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxfleet gateway",
        description="Run the voxfleet REST gateway (tenant API, sessions, LiveKit webhooks). Settings come from"
                    " VOXFLEET_* environment variables; the options below override them. `voxfleet gateway openapi`"
                    " prints the tenant API's OpenAPI document instead.")
    parser.add_argument("--host", default=None, help="address to listen on (VOXFLEET_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port of the tenant API (VOXFLEET_PORT, default 8000)")
    parser.add_argument("--operational-port", type=int, default=None,
                        help="port of /metrics, /healthz, /readyz for the platform, never routed to tenants"
                             " (VOXFLEET_OPERATIONAL_PORT, default 9090)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (VOXFLEET_KUBECONFIG; default $KUBECONFIG,"
                                                                  " then in-cluster)")
    parser.add_argument("--log-format", choices=("json", "console"), default=None, help="log renderer")
    return parser


def main(argv: list[str] | None = None) -> int:
    command = sys.argv[1:] if argv is None else argv
    if command[:1] == ["openapi"]:  # `voxfleet gateway openapi > docs/openapi.json`: the published document
        from voxfleet.gateway.openapi_document import main as print_openapi

        return print_openapi(command[1:])
    args = _parser().parse_args(argv)
    import uvicorn

    from voxfleet.gateway.app import create_app, create_operational_app
    from voxfleet.gateway.settings import GatewaySettings
    from voxfleet.telemetry.logging_setup import configure_logging

    overrides = {name: value for name, value in (("host", args.host), ("port", args.port),
                                                 ("operational_port", args.operational_port),
                                                 ("kubeconfig", args.kubeconfig), ("log_format", args.log_format))
                 if value is not None}
    try:
        settings = GatewaySettings(**overrides)
        settings.load_session_keys()
        settings.load_worker_token()
        settings.load_database_url()
    except (ValidationError, RuntimeError, OSError) as error:
        print(f"voxfleet gateway: invalid settings: {error}", file=sys.stderr)
        return 2
    configure_logging("gateway", log_format=settings.log_format, level=settings.log_level)
    app = create_app(settings)
    # The standard asyncio loop, never uvloop: uvloop 0.23 aborts the whole process (SIGABRT) when TLS connects
    # made side by side are reset, which is what the gateway's four watches do when the apiserver restarts or a
    # load balancer cuts them (MagicStack/uvloop#653, open); a smaller share of the same resets left another
    # connection's file descriptor to the wrong transport. Reproduced with aiohttp 3.14: tests/chaos/test_outages.py.
    loop_factory = uvicorn.Config(app, log_config=None, loop="asyncio").get_loop_factory()  # log_config: ours
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(uvicorn, settings, app, create_operational_app(app.state.runtime)))
    return 0


async def _serve(uvicorn, settings, app, operational_app) -> None:
    """The API and the operational port in one process and one event loop (one runtime serves both). The API
    server owns the signals and the runtime's lifespan; the operational one stops when the API server has."""
    common = {"host": settings.host, "log_config": None, "access_log": False, "server_header": False,
              "proxy_headers": False}
    api = uvicorn.Server(uvicorn.Config(app, port=settings.port, **common))

    class OperationalServer(uvicorn.Server):
        def capture_signals(self):  # the API server handles SIGTERM/SIGINT for both
            return contextlib.nullcontext()

    operational = OperationalServer(uvicorn.Config(operational_app, port=settings.operational_port, lifespan="off",
                                                   **common))
    operational_task = asyncio.create_task(operational.serve(), name="operational port")
    try:
        await api.serve()
    finally:
        operational.should_exit = True
        await operational_task


if __name__ == "__main__":
    sys.exit(main())
