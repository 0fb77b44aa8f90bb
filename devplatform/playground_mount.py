"""Serve the browser playground (playground/dist, built with npm at set-up) from a Starlette/FastAPI app.

The gateway calls `mount_playground(app)`: the page then talks to the tenant API on the same origin (no CORS),
and the browser joins LiveKit directly. Nothing is loaded from a CDN: livekit-client is bundled into the page.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PATH = "/playground"
ASSETS_ENV = "VOXFLEET_PLAYGROUND_DIR"
_HEADERS = {
    "Cache-Control": "no-cache",  # a rebuilt bundle shows at the next reload
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the API key may sit in the URL fragment; never pass the URL on
    "Permissions-Policy": "microphone=(self), camera=()",
}


def default_assets_dir() -> Path | None:
    """$VOXFLEET_PLAYGROUND_DIR, else the bundle built in this checkout (playground/dist)."""
    if os.environ.get(ASSETS_ENV):
        return Path(os.environ[ASSETS_ENV])
    built = Path(__file__).resolve().parents[1] / "playground" / "dist"
    return built if (built / "index.html").is_file() else None


class _PlaygroundFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope):
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def mount_playground(app, assets_dir: Path | None = None, *, path: str = PATH) -> bool:
    """Mount the built playground at ``path`` (``/playground/``); False (and nothing mounted) when no bundle is
    built, so a gateway without one still starts."""
    directory = assets_dir or default_assets_dir()
    if directory is None or not (Path(directory) / "index.html").is_file():
        return False
    app.mount(path, _PlaygroundFiles(directory=str(directory), html=True), name="playground")
    return True
