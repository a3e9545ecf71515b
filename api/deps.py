"""`Annotated` dependency aliases, so routes read like plain typed functions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.guard import STATE_USER_ID
from core.accounts import user_for_key
from core.db import end_scope
from core.errors import Forbidden, Unauthorized
from core.runtime import Runtime
from core.views import Presenter
from models import User


async def get_runtime(request: Request) -> Runtime:
    """Async, like every dependency that does no I/O: FastAPI runs a sync one in a worker thread (README "API
    under load")."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[Session]:
    """One transaction per request, committed when the route returns (before the response is sent); services
    only flush. Tasks registered with `core.db.after_commit` are sent after the commit; actions registered with
    `core.db.on_rollback` (removing blobs stored meanwhile) run if it rolls back. Opening a session does no I/O
    (it connects at its first query), so only the end, `core.db.end_scope`, goes to a worker thread."""
    session = runtime.sessions()
    try:
        yield session
    except BaseException as exc:
        await _end(session, exc)
        raise
    await _end(session, None)


async def _end(session: Session, error: BaseException | None) -> None:
    """As FastAPI ends a sync generator dependency: shielded from cancellation, and in a thread of its own limiter,
    so that it never waits for the worker threads, which may all be waiting for a pooled connection it returns."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(end_scope, session, error, limiter=anyio.CapacityLimiter(1))


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer svd_...`")


def get_current_user(
    request: Request, session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    authenticated = getattr(request.state, STATE_USER_ID, None)  # api.guard checked the key before the body
    if authenticated is not None:
        user = session.get(User, authenticated)
        if user is not None:
            return user
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized()
    user = user_for_key(session, credentials.credentials)
    if user is None:
        raise Unauthorized()
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("This endpoint is for admins.")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


async def get_presenter(session: SessionDep, runtime: RuntimeDep) -> Presenter:
    return Presenter(session, runtime.storage, runtime.settings)


PresenterDep = Annotated[Presenter, Depends(get_presenter)]
