"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.metrics import Metrics
from api.routes import admin, checkpoints, files, jobs, ops, subjects, users
from core.bootstrap import bootstrap_admin
from core.runtime import Runtime, build_runtime
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)
DESCRIPTION = """Personalize a text-to-image model with SVDiff spectral shifts: upload 3 to 5 photos of a subject,
train, then generate it in any scene. Auth: `Authorization: Bearer <api key>`. Errors are
`application/problem+json` (RFC 9457)."""


def create_app(runtime: Runtime | None = None, settings: Settings | None = None) -> FastAPI:
    runtime = runtime or build_runtime(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        key = bootstrap_admin(runtime)
        if key is not None:
            log.warning("development admin API key: %s", key)
            print(f"svdiff: development admin API key: {key}", flush=True)
        yield

    app = FastAPI(title="svdiff-service", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.runtime = runtime
    app.state.metrics = Metrics(runtime)
    app.middleware("http")(app.state.metrics.middleware)
    errors.install(app)
    for module in (users, subjects, jobs, checkpoints, admin, files, ops):
        app.include_router(module.router)
    return app
