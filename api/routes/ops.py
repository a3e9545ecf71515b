from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api.deps import RuntimeDep
from api.errors import problem
from core.celery_app import check_broker
from core.errors import NotFound, Unauthorized
from core.runtime import Runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process lives."""
    return {"status": "ok"}


def _checks(runtime: Runtime) -> dict[str, str]:
    results: dict[str, str] = {}
    def database() -> None:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    checks: dict[str, Any] = {
        "database": database,
        "broker": lambda: check_broker(runtime.celery),
        "storage": runtime.storage.check,
    }
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"unavailable: {type(exc).__name__}"
    return results


@router.get("/readyz", responses={503: {"description": "A dependency does not answer"}})
async def readyz(request: Request, runtime: RuntimeDep) -> Response:
    """The database, the broker and the storage answer."""
    results = await run_in_threadpool(_checks, runtime)
    if all(v == "ok" for v in results.values()):
        return JSONResponse({"status": "ok", "checks": results})
    down = ", ".join(k for k, v in results.items() if v != "ok")
    return problem(request, 503, f"Unavailable: {down}.", slug="not-ready", extra={"checks": results})


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format, behind `SVDIFF_METRICS_TOKEN` when set (in production only then)."""
    settings = request.app.state.runtime.settings
    token = settings.metrics_token or None  # an empty SVDIFF_METRICS_TOKEN (compose's default) is no token
    if token is None and settings.environment == "production":
        raise NotFound("Metrics are off: set SVDIFF_METRICS_TOKEN to serve them.")
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("Metrics need `Authorization: Bearer <SVDIFF_METRICS_TOKEN>`.")
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
