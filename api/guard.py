"""Authentication before any body is read, capped bodies, and a per-address limit on failed authentication.

FastAPI reads and parses a JSON body before it resolves a route's dependencies, so without this a 150 MB body sent
with no key was read whole before the 401. For a request with a body under /v1/ this middleware:
- authenticates its bearer key first (a failure is a 401 and not one byte of the body is read);
- caps the body: a JSON (or any non-multipart) body at `max_json_body_bytes`, read here and replayed to the app;
  a multipart body at the photo limits' total, counted while it streams (`api.uploads` also caps each file);
  either way a 413 problem, at once when Content-Length already says so.
Every 401 counts against the client's address: past `rate_limit_failures` a window, that address's failures are
answered 429 with Retry-After instead (a client with a valid key behind the same address is not blocked).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.ratelimit import RateLimited, RateLimits, bearer_key
from core.accounts import user_for_key
from core.db import session_scope
from core.errors import ServiceError, TooLarge, Unauthorized
from core.runtime import Runtime

Render = Callable[[Request, ServiceError], Awaitable[Response]]
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
STATE_USER_ID = "authenticated_user_id"


def multipart_cap(runtime: Runtime) -> int:
    settings = runtime.settings
    return settings.max_photos_per_subject * settings.max_photo_bytes + settings.max_json_body_bytes


class AuthFirst:
    def __init__(self, app: ASGIApp, runtime: Runtime, limits: RateLimits | None, render: Render) -> None:
        self.app, self.runtime, self.limits, self.render = app, runtime, limits, render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        address = scope["client"][0] if scope.get("client") else "unknown"
        try:
            if scope["method"] in BODY_METHODS:
                user_id = await run_in_threadpool(self._authenticate, bearer_key(request))
                if user_id is None:
                    raise Unauthorized()
                scope.setdefault("state", {})[STATE_USER_ID] = user_id
                receive = await self._capped(request, receive)
        except ServiceError as exc:
            await self._reply(request, exc, address, send)
            return
        await self.app(scope, receive, self._counting_failures(request, address, send))

    def _authenticate(self, key: str | None) -> str | None:
        if not key:
            return None
        with session_scope(self.runtime.sessions) as session:
            user = user_for_key(session, key)
            return user.id if user is not None else None

    async def _capped(self, request: Request, receive: Receive) -> Receive:
        multipart = request.headers.get("content-type", "").lower().startswith("multipart/")
        cap = multipart_cap(self.runtime) if multipart else self.runtime.settings.max_json_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise TooLarge(f"The body is {int(declared):,} bytes; at most {cap:,} are accepted here.")
        if multipart:
            return _counting(receive, cap)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _replay(b"", disconnected=True)
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > cap:
                raise TooLarge(f"The body is over {cap:,} bytes, the most accepted here.")
        return _replay(body)

    async def _reply(self, request: Request, exc: ServiceError, address: str, send: Send) -> None:
        if isinstance(exc, Unauthorized):
            exc = await self._failed(address) or exc
        response = await self.render(request, exc)
        response.headers["Connection"] = "close"  # an unread body must not be taken for the next request
        await response(request.scope, _nothing, send)

    async def _failed(self, address: str) -> RateLimited | None:
        if self.limits is None:
            return None
        return await run_in_threadpool(self.limits.count_failure, address)

    def _counting_failures(self, request: Request, address: str, send: Send) -> Send:
        """Counts a route's 401 against the address; over the limit, the 429 goes out in its place."""
        replaced = False

        async def wrapped(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 401:
                limited = await self._failed(address)
                if limited is not None:
                    replaced = True
                    response = await self.render(request, limited)
                    await response(request.scope, _nothing, send)
                    return
            if not replaced:
                await send(message)

        return wrapped


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def _replay(body: bytes, disconnected: bool = False) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent or disconnected:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _counting(receive: Receive, cap: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message: dict[str, Any] = dict(await receive())
        seen += len(message.get("body", b""))
        if seen > cap:
            raise TooLarge(f"The upload is over {cap:,} bytes in all, the most accepted here.")
        return message

    return counted
