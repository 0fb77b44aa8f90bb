"""`voxfleet worker`: one long-lived process per pod serving sessionsPerWorker calls of one agent.

The control API answers at once (/healthz 200, /readyz 503) while the models load; /readyz turns 200 when the
worker is warm. SIGTERM (or SIGINT), POST /v1/drain and resident memory past the agent's recycle limit all drain
the same way: /readyz 503, dispatch 409 draining, live calls finish up to limits.maxSessionSeconds, then the
process exits: 0 after SIGTERM or a drain request (asked for), EXIT_RECYCLE (75) after a memory recycle. The
kubelet restarts the container either way (restartPolicy Always); the distinct code shows in the pod's last
state, with the reason in its termination message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from voxfleet.api.settings import ENV_PREFIX, PlatformSettings
from voxfleet.api.worker_config import WorkerConfig

MAX_CONFIG_BYTES = 1 << 20
# sysexits.h EX_TEMPFAIL ("temporary failure, try again"): the worker ended itself to come back with fresh
# memory. Not 0, so `kubectl get pod` / kube_pod_container_status_last_terminated_exitcode tell a recycle
# from a deletion; not 1 or 128+n, so nobody takes it for a crash.
EXIT_RECYCLE = 75
EXIT_CODES = {"signal": 0, "request": 0, "memory": EXIT_RECYCLE}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxfleet worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None,
                        help=f"agent config JSON (default ${ENV_PREFIX}AGENT_CONFIG or /etc/voxfleet/agent/agent.json)")
    parser.add_argument("--host", default=None, help=f"bind address (default ${ENV_PREFIX}BIND_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default ${ENV_PREFIX}WORKER_PORT or 8080)")
    parser.add_argument("--region", default=None, help=f"region (default ${ENV_PREFIX}REGION)")
    return parser


def load_config(path: Path) -> WorkerConfig:
    """The rendered agent config; errors say which file and which field."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SystemExit(f"voxfleet worker: cannot read agent config {path}: {error.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SystemExit(f"voxfleet worker: agent config {path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return WorkerConfig.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:10])
        raise SystemExit(f"voxfleet worker: agent config {path} is not a valid WorkerConfig: {problems}") from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from voxfleet.worker.settings import WorkerSettings
    from voxfleet.telemetry.logging_setup import configure_logging

    overrides = {k: v for k, v in (("agent_config", args.config), ("bind_host", args.host),
                                   ("worker_port", args.port), ("region", args.region)) if v is not None}
    settings = WorkerSettings(**overrides)
    platform = PlatformSettings()
    configure_logging("worker", log_format=platform.log_format, level=platform.log_level, pod=settings.pod_name,
                      region=settings.region)
    try:
        token = platform.load_worker_token()
    except (RuntimeError, OSError) as error:
        print(f"voxfleet worker: {error}", file=sys.stderr)
        return 2
    config = load_config(settings.agent_config)
    return asyncio.run(serve(config, settings, platform, token))


async def serve(config: WorkerConfig, settings, platform: PlatformSettings, token: str) -> int:
    import structlog

    from voxfleet.worker.control_api import build_app
    from voxfleet.worker.worker_process import WorkerProcess

    log = structlog.get_logger("voxfleet.worker")
    worker = WorkerProcess(config, settings, platform)
    server = _QuietServer(uvicorn.Config(build_app(worker, token), host=settings.bind_host,
                                         port=settings.worker_port, log_config=None, access_log=False,
                                         lifespan="off", timeout_graceful_shutdown=5))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_drain, "signal")
    serving = asyncio.create_task(server.serve())
    try:
        warming = asyncio.create_task(worker.warm_up())
        stopped = asyncio.create_task(worker.drain_requested())
        await asyncio.wait({warming, stopped, serving}, return_when=asyncio.FIRST_COMPLETED)
        if warming.done() and warming.exception() is not None:
            log.error("warm start failed", error=str(warming.exception())[:1000])
            return 1
        if serving.done():
            log.error("control API stopped", error=str(serving.exception() or "exited")[:500])
            return 1
        reason = await stopped
        await worker.drain()
        _write_termination_message(settings.termination_message_path, worker.termination_message())
        return EXIT_CODES[reason]
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 10)
        log.info("worker exiting", pid=os.getpid())


def _write_termination_message(path: Path, message: str) -> None:
    """Kubernetes mounts terminationMessagePath into the container; elsewhere (a dev machine, the test world's
    pod runner) the file is absent and nothing is created."""
    if path.is_file():
        with contextlib.suppress(OSError):
            path.write_text(message[:4096])


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM means drain first, which serve() owns."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield
