"""`Annotated` dependency aliases, so routes read like plain typed functions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.guard import STATE_USER_ID
from core.accounts import user_for_key
from core.db import session_scope
from core.errors import Forbidden, Unauthorized
from core.runtime import Runtime
from core.views import Presenter
from models import User


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    """One transaction per request, committed when the route returns (before the response is sent); services
    only flush. Tasks registered with `core.db.after_commit` are sent after the commit; actions registered with
    `core.db.on_rollback` (removing blobs stored meanwhile) run if it rolls back."""
    with session_scope(runtime.sessions) as session:
        yield session


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


def get_presenter(session: SessionDep, runtime: RuntimeDep) -> Presenter:
    return Presenter(session, runtime.storage, runtime.settings)


PresenterDep = Annotated[Presenter, Depends(get_presenter)]
