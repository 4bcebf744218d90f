"""/healthz (the process runs) and /readyz (its database and Redis answer)."""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from sqlalchemy import text

from webhook.deps import RuntimeDep
from webhook.routing import GetHeadRouter

PROBE_TIMEOUT = 2.0


def create_health_router() -> GetHeadRouter:
    router = GetHeadRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(runtime: RuntimeDep) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT), runtime.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"unavailable: {type(error).__name__}"
        if runtime.redis is not None:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await runtime.redis.ping()
                checks["redis"] = "ok"
            except Exception as error:
                checks["redis"] = f"unavailable: {type(error).__name__}"
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    return router
