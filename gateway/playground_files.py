"""The browser playground's built bundle (settings.playground_dir), served as static files at /playground/.

The page then talks to the tenant API on the same origin (no CORS) with the API key from its URL fragment (which
browsers never send to a server), and joins LiveKit directly; nothing is loaded from a CDN (livekit-client is
bundled). The gateway only serves a directory it is given: building the bundle is the dev platform's business.
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles
from starlette.types import Scope

PATH = "/playground"
_HEADERS = {
    "Cache-Control": "no-cache",  # a rebuilt bundle shows at the next reload
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the API key may sit in the URL fragment; never pass the URL on
    "Permissions-Policy": "microphone=(self), camera=()",
}


class _PlaygroundFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope):
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def mount_playground(app, directory: Path | None, *, path: str = PATH) -> bool:
    """Mount the built playground at ``path`` (``/playground/``); False (and nothing mounted) when no bundle is
    built there, so a gateway without one still starts."""
    if directory is None or not (Path(directory) / "index.html").is_file():
        return False
    app.mount(path, _PlaygroundFiles(directory=str(directory), html=True), name="playground")
    return True
