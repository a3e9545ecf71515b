"""`?name=` means the parameter is absent (API.md writes `?user_id=&cursor=&limit=` for the optional ones)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class EmptyQueryValuesAreAbsent:
    """Drops the query parameters with an empty value (`a=` or a bare `a`) before routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if query:
            kept = b"&".join(part for part in query.split(b"&") if part.partition(b"=")[2])
            if kept != query:
                scope = {**scope, "query_string": kept}
        await self.app(scope, receive, send)
