"""`require_database`: the FastAPI dependency of every endpoint that needs the store (history, webhooks, usage).

    @router.get("/v1/sessions")
    async def list_sessions(database: Database = Depends(require_database), ...): ...

A gateway configured without a database (no VOXFLEET_DATABASE_URL) answers those endpoints 503
`database_not_configured` and serves everything else as before; the chart and `voxfleet dev` always configure one.
"""

from __future__ import annotations

from fastapi import Request

from voxfleet.gateway.api_errors import ApiError
from voxfleet.store.database import Database

NOT_CONFIGURED = "database_not_configured"


def require_database(request: Request) -> Database:
    database = getattr(request.app.state, "database", None)
    if database is None:
        raise ApiError(503, NOT_CONFIGURED, "This gateway has no database configured (VOXFLEET_DATABASE_URL), so"
                                            " call history, webhooks and usage are not available.")
    return database
