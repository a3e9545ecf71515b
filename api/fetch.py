"""Photos by URL: each URL fetched under the outbound address guard (`core.addresses`: every hop, redirects
included, resolved once, checked, and connected to at the checked address), streamed into a spooled file that stops
at the per-file byte limit, within a wall-clock deadline for the whole fetch; the URLs of a request concurrently, a
few at a time, without blocking the event loop. Each URL ends as an `UploadedFile`, fetched or `refused`, and goes
through the same checks as an uploaded file (`api.services.subjects.add_photos`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from tempfile import SpooledTemporaryFile
from urllib.parse import urljoin

import anyio
import anyio.to_thread
import httpx

from api.uploads import SPOOL_BYTES, UploadedFile, larger_than
from core.addresses import UnresolvedHost, UnsafeUrl, check_url, pinned_request
from core.errors import InvalidInput, ServiceError, TooLarge
from core.settings import Settings

log = logging.getLogger(__name__)
FIELD = "urls"
MAX_REDIRECTS = 3
CONCURRENT_FETCHES = 8  # per request: 20 URLs that each take their whole deadline answer within 3 deadlines
HEADERS = {
    "user-agent": "svdiff-photos/1",
    "accept": "image/jpeg, image/png, image/webp",
    "accept-encoding": "identity",  # the bytes counted are the bytes stored: no decompression to inflate them
}


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    timeout_s: float
    allow_private: bool

    @classmethod
    def of(cls, settings: Settings) -> FetchLimits:
        return cls(settings.max_photo_bytes, settings.photo_url_timeout_seconds, settings.allow_private_webhooks)


async def fetch_photos(urls: list[str], limits: FetchLimits) -> list[UploadedFile]:
    """One `UploadedFile` per URL, in order; never raises for a URL's failure (its `refused` says why)."""
    uploads = [UploadedFile(FIELD, url, SpooledTemporaryFile(SPOOL_BYTES)) for url in urls]  # noqa: SIM115
    slots = anyio.Semaphore(CONCURRENT_FETCHES)

    async def fetch(upload: UploadedFile) -> None:
        async with slots:
            upload.refused = await fetch_one(upload, limits)

    try:
        async with anyio.create_task_group() as group:
            for upload in uploads:
                group.start_soon(fetch, upload)
    except BaseException:
        close_all(uploads)
        raise
    return uploads


def close_all(uploads: list[UploadedFile]) -> None:
    for upload in uploads:
        upload.file.close()


async def fetch_one(upload: UploadedFile, limits: FetchLimits) -> ServiceError | None:
    """Fetch `upload.filename` into `upload.file` within the deadline; the reason it was refused, if it was."""
    try:
        with anyio.fail_after(limits.timeout_s):
            await _follow(upload, limits)
    except TimeoutError:
        return InvalidInput(f"no complete answer within {limits.timeout_s:g} s")
    except ServiceError as exc:
        return exc
    except Exception as exc:  # whatever else a hostile server provokes is this URL's failure, never a 500
        log.warning("fetching a photo URL failed unexpectedly", exc_info=exc)
        return InvalidInput(f"could not be fetched ({type(exc).__name__})")
    return None


async def _follow(upload: UploadedFile, limits: FetchLimits) -> None:
    """GET the URL, following at most MAX_REDIRECTS redirects, each hop checked by the guard."""
    url = upload.filename
    for hop in range(MAX_REDIRECTS + 1):
        said = f"redirected to {url}: " if hop else ""
        addresses = await _checked(url, limits.allow_private, said)
        try:
            location = await _get(url, addresses, upload, limits, said)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # refused, reset, TLS, protocol: this URL's failure
            raise InvalidInput(f"{said}could not be fetched ({type(exc).__name__}: {exc})"[:300]) from exc
        if location is None:
            return
        url = urljoin(url, location)
    raise InvalidInput(f"more than {MAX_REDIRECTS} redirects")


async def _checked(url: str, allow_private: bool, said: str) -> list[str]:
    """The addresses `url` may be fetched from; the resolver runs in a thread (abandoned at the deadline)."""
    check = partial(check_url, url, allow_private=allow_private)
    try:
        return await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
    except UnresolvedHost as exc:
        raise InvalidInput(f"{said}{exc}") from exc
    except UnsafeUrl as exc:
        raise InvalidInput(f"{said}refused: {exc}") from exc


async def _get(url: str, addresses: list[str], upload: UploadedFile, limits: FetchLimits, said: str) -> str | None:
    """One hop, connected to the first checked address: its redirect's Location, or None once the body is in
    `upload.file`. A fresh client each time: no connection is reused under another name. Its own timeouts are a
    backstop; the deadline of `fetch_one` is what counts."""
    target, headers, extensions = pinned_request(url, addresses)
    async with (
        httpx.AsyncClient(timeout=limits.timeout_s + 1, follow_redirects=False, trust_env=False) as client,
        client.stream("GET", target, headers={**HEADERS, **headers}, extensions=extensions) as response,
    ):
        if response.has_redirect_location:
            return response.headers["location"]
        if not 200 <= response.status_code < 300:
            raise InvalidInput(f"{said}the server answered HTTP {response.status_code}")
        await _read(response, upload, limits.max_bytes)
        return None


async def _read(response: httpx.Response, upload: UploadedFile, max_bytes: int) -> None:
    """The body into `upload.file`, refused (413) as soon as it passes `max_bytes`: nothing past it is read."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"{larger_than(max_bytes)} (Content-Length: {int(declared):,}); not downloaded")
    async for chunk in response.aiter_raw():
        upload.size += len(chunk)
        if upload.size > max_bytes:
            raise TooLarge(f"{larger_than(max_bytes)}; the download stopped there")
        upload.file.write(chunk)
