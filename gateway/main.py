"""`voxfleet gateway`: run the REST gateway with uvicorn."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxfleet gateway",
        description="Run the voxfleet REST gateway (tenant API, sessions, LiveKit webhooks). Settings come from"
                    " VOXFLEET_* environment variables; the options below override them.")
    parser.add_argument("--host", default=None, help="address to listen on (VOXFLEET_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (VOXFLEET_PORT, default 8000)")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (VOXFLEET_KUBECONFIG; default in-cluster)")
    parser.add_argument("--log-format", choices=("json", "console"), default=None, help="log renderer")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import uvicorn

    from voxfleet.gateway.app import create_app
    from voxfleet.gateway.settings import GatewaySettings
    from voxfleet.gateway.structured_logging import configure

    overrides = {name: value for name, value in (("host", args.host), ("port", args.port),
                                                 ("kubeconfig", args.kubeconfig), ("log_format", args.log_format))
                 if value is not None}
    try:
        settings = GatewaySettings(**overrides)
        settings.load_session_keys()
        settings.load_worker_token()
    except (ValidationError, RuntimeError, OSError) as error:
        print(f"voxfleet gateway: invalid settings: {error}", file=sys.stderr)
        return 2
    configure(settings.log_format, settings.log_level)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                access_log=False, server_header=False, proxy_headers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
