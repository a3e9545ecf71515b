"""One handler renders every error as RFC 9457 application/problem+json; no response ever carries a trace."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import InvalidInput, ServiceError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
TYPE_BASE = "https://svdiff.dev/problems/"


def problem(
    request: Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    slug: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = {
        "type": TYPE_BASE + (slug or phrase.lower().replace(" ", "-")),
        "title": title or phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":  # its location is a character offset, not a field
        return "body"
    loc = tuple(error.get("loc", ()))
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[-1] if loc else "")


async def service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem(
        request, exc.status, exc.detail, title=exc.title, slug=exc.type_slug, extra=exc.extra(), headers=exc.headers
    )


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field(e), "detail": str(e.get("msg", ""))} for e in exc.errors()]
    return problem(request, 422, "Some fields are invalid.", title=InvalidInput.title, slug=InvalidInput.type_slug,
                   extra={"errors": errors})  # fmt: skip


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such resource."
    return problem(request, exc.status_code, detail, headers=getattr(exc, "headers", None))


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        log.warning("database unavailable: %s", exc)
        return problem(
            request, 503, "The database is unavailable.", slug="database-unavailable", headers={"Retry-After": "5"}
        )
    if isinstance(exc, DataError):  # a value the database cannot hold that validation let through: still input
        log.warning("database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
        return problem(request, 422, "A value cannot be stored.", title=InvalidInput.title, slug=InvalidInput.type_slug)
    return await unexpected_error(request, exc)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(request, 500, "An unexpected error occurred; it has been logged.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(Exception, unexpected_error)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; some carry more members (`errors`, `limit`, `checks`...).",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "detail": {"type": "string"}}}},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}  # fmt: skip


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx and 5xx answer of the OpenAPI schema is documented as what it is: application/problem+json."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for code, response in operation.get("responses", {}).items():
                if str(code)[0] in "45":
                    response["content"] = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return schema
