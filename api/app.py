"""The application factory."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import errors, web
from api.guard import AuthFirst
from api.metrics import Metrics, MetricsMiddleware
from api.query import EmptyQueryValuesAreAbsent
from api.ratelimit import RateLimitMiddleware, make_rate_limits
from api.routes import admin, checkpoints, events, files, jobs, ops, subjects, users
from core.bootstrap import bootstrap_admin
from core.runtime import Runtime, build_runtime
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)
DESCRIPTION = """Personalize a text-to-image model with SVDiff spectral shifts: upload 3 to 5 photos of a subject,
train, then generate it in any scene. Auth: `Authorization: Bearer <api key>`. Errors are
`application/problem+json` (RFC 9457). Requests are rate limited per API key (and job-creating POSTs separately):
over the limit, 429 with `Retry-After` in seconds."""
RATE_LIMITED: dict[int | str, dict[str, object]] = {
    429: {
        "description": "Rate limited: retry after `Retry-After` seconds (application/problem+json)",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
    }
}


def start_bootstrap(runtime: Runtime, retry_seconds: float = 5.0) -> None:
    """Create the first admin now; if the database is not up yet, keep trying in the background."""

    def attempt() -> bool:
        try:
            key = bootstrap_admin(runtime)
        except Exception as exc:
            log.warning("first admin not created yet (%s); retrying in %.0fs", type(exc).__name__, retry_seconds)
            return False
        if key is not None:
            log.warning("development admin API key: %s", key)
            print(f"svdiff: development admin API key: {key}", flush=True)
        return True

    def retry() -> None:
        while not attempt():
            time.sleep(retry_seconds)

    if not attempt():
        threading.Thread(target=retry, name="bootstrap-admin", daemon=True).start()


def create_app(runtime: Runtime | None = None, settings: Settings | None = None) -> FastAPI:
    runtime = runtime or build_runtime(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start_bootstrap(runtime)
        yield

    app = FastAPI(title="svdiff-service", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.runtime = runtime
    app.add_middleware(EmptyQueryValuesAreAbsent)  # added first, so innermost: just before routing
    app.state.rate_limits = make_rate_limits(runtime.settings)
    if app.state.rate_limits is not None:
        app.middleware("http")(RateLimitMiddleware(app.state.rate_limits, errors.service_error))
    app.add_middleware(AuthFirst, runtime=runtime, limits=app.state.rate_limits, render=errors.service_error)
    app.state.metrics = Metrics(runtime)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # added last, so outermost: counts the 429s too
    errors.install(app)
    app.state.event_slots = events.StreamSlots()
    for module in (users, subjects, jobs, events, checkpoints, admin):
        app.include_router(module.router, responses=RATE_LIMITED)
    for module in (files, ops, web):  # no API key: never rate limited
        app.include_router(module.router)
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = errors.document_problems(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
