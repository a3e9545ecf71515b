"""The web app: one static page and its ES modules (no build step), served at `/` when `settings.web_app_enabled`
(`SVDIFF_WEB_APP`; unset: on in development, off in production). Every answer carries a strict Content-Security-
Policy: scripts and styles only from this origin, images also from the storage's public origin (signed links)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

from api.deps import RuntimeDep
from core.errors import NotFound
from core.settings import Settings

HERE = Path(__file__).resolve().parent
INDEX = HERE / "index.html"
STATIC = HERE / "static"
ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
MEDIA_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
ACCEPTED_TYPES = ["image/jpeg", "image/png", "image/webp"]

router = APIRouter(include_in_schema=False)


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}".lower()


def storage_origins(settings: Settings) -> list[str]:
    """Where the browser fetches photos and generated images from: the S3 endpoint clients reach (its public
    endpoint, else the endpoint, else AWS's path-style hosts for the region), or the service's own public base URL
    for the local storage's signed links (which may differ from the address the page was opened at)."""
    if settings.storage == "s3":
        endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        if endpoint:
            candidates = [endpoint]
        else:
            candidates = ["https://s3.amazonaws.com", f"https://s3.{settings.s3_region}.amazonaws.com"]
    else:
        candidates = [settings.base_url]
    origins = [o for o in map(_origin, candidates) if o is not None]
    return list(dict.fromkeys(origins))


def content_security_policy(settings: Settings) -> str:
    images = " ".join(["'self'", "blob:", "data:", *storage_origins(settings)])
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {images}",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ])  # fmt: skip


def security_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache",
    }


def _enabled(settings: Settings) -> None:
    if not settings.web_app_enabled:
        raise NotFound("The web app is off here (SVDIFF_WEB_APP=true turns it on).")
    if not INDEX.is_file():  # an installation without the package's data files
        raise NotFound("The web app's files are not installed with this copy of the service.")


@router.get("/")
def index(runtime: RuntimeDep) -> Response:
    _enabled(runtime.settings)
    return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=security_headers(runtime.settings))


@router.get("/web/config.json")
def config(runtime: RuntimeDep) -> Response:
    """The upload limits and training bounds the app checks before it sends anything (the API checks them again)."""
    settings = runtime.settings
    _enabled(settings)
    body: dict[str, Any] = {
        "accepted_types": ACCEPTED_TYPES,
        "max_photo_bytes": settings.max_photo_bytes,
        "max_photo_pixels": settings.max_photo_pixels,
        "min_photo_side": settings.min_photo_side,
        "min_photos": 3,
        "max_photos": min(5, settings.max_photos_per_subject),
        "default_training_steps": settings.default_training_steps,
        "max_training_steps": settings.max_training_steps,
        "default_learning_rate": settings.default_learning_rate,
        "lora_ranks": list(settings.lora_ranks),
    }
    return JSONResponse(body, headers=security_headers(settings))


@router.get("/web/{name}")
def asset(name: str, runtime: RuntimeDep) -> Response:
    _enabled(runtime.settings)
    match = ASSET_NAME.match(name)
    path = STATIC / name
    if match is None or not path.is_file():
        raise NotFound(f"No file {name!r} in the web app.")
    return FileResponse(path, media_type=MEDIA_TYPES[match.group(1)], headers=security_headers(runtime.settings))
