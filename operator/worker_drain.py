"""`POST /v1/drain` to one worker: stop taking calls, finish the live ones, exit when idle (the same drain as
SIGTERM, voxfleet.worker.control_api). The eviction guard asks it of busy workers on a node that is leaving, so
that the node's drain goes through as soon as their calls end, and no new call lands there meanwhile.

Asked with the worker's own namespace token (derived from the root, like the load polls); rare (once per worker
per node drain), so a plain aiohttp session is enough.
"""

from __future__ import annotations

import aiohttp
from pydantic import ValidationError

from voxfleet.api.wire import LoadReport


class DrainRefused(Exception):
    pass


class WorkerDrainClient:
    def __init__(self, port: int, timeout: float):
        self.port = port
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def drain(self, ip: str, token: str) -> LoadReport:
        """The worker's load after the request (it says draining); DrainRefused for anything else."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        url = f"http://{ip}:{self.port}/v1/drain"
        try:
            async with self._session.post(url, headers={"Authorization": f"Bearer {token}"}) as response:
                body = await response.content.read(64 * 1024)
                if response.status not in (200, 202):
                    # 404: a worker image from before the drain endpoint; it still drains on SIGTERM.
                    raise DrainRefused(f"HTTP {response.status}")
                return LoadReport.model_validate_json(body)
        except (aiohttp.ClientError, TimeoutError, ValidationError) as error:
            raise DrainRefused(f"{type(error).__name__}: {str(error)[:200]}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
