from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.deps import AdminUser, CurrentUser, SessionDep
from api.pagination import Page, PageDep, paginate
from api.schemas import ApiKeyCreated, ApiKeyList, ApiKeyOut, UserCreate, UserCreated, UserOut
from api.services.common import is_id
from core.accounts import create_user, new_key, revoke_key, rotate_key
from core.errors import Conflict, NotFound
from models import ApiKey, User

router = APIRouter(tags=["users"])


def _out(user: User) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role, created_at=user.created_at)


@router.post("/v1/users", status_code=201, response_model=UserCreated)
def create(body: UserCreate, session: SessionDep, _admin: AdminUser) -> UserCreated:
    """Create a user and its API key (admin). The key and webhook secret are shown only here."""
    user, key = create_user(session, body.name, body.role)
    return UserCreated(**_out(user).model_dump(), api_key=key, webhook_secret=user.webhook_secret)


@router.get("/v1/users", response_model=Page[UserOut])
def list_users(session: SessionDep, _admin: AdminUser, page: PageDep) -> Page[UserOut]:
    return paginate(session, select(User), User, page, _out)


@router.get("/v1/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return _out(user)


def _key_out(row: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(id=row.id, prefix=row.prefix, created_at=row.created_at, last_used_at=row.last_used_at,
                     revoked_at=row.revoked_at)  # fmt: skip


def _created(row: ApiKey, key: str) -> ApiKeyCreated:
    return ApiKeyCreated(**_key_out(row).model_dump(), api_key=key)


def _key_owner(session: Session, user: User, user_id: str) -> User:
    """`me` or the caller's own id; any user's for an admin; 404 otherwise (another user's ids are never revealed)."""
    if user_id in ("me", user.id):
        return user
    owner = session.get(User, user_id) if user.is_admin and is_id(user_id) else None
    if owner is None:
        raise NotFound(f"No user {user_id!r}.")
    return owner


def _key(session: Session, user: User, user_id: str, key_id: str) -> ApiKey:
    owner = _key_owner(session, user, user_id)
    row = session.get(ApiKey, key_id, with_for_update=True) if is_id(key_id) else None
    if row is None or row.user_id != owner.id:
        raise NotFound(f"No API key {key_id!r}.")
    return row


@router.get("/v1/users/{user_id}/keys", response_model=ApiKeyList, tags=["keys"])
def list_keys(user_id: str, session: SessionDep, user: CurrentUser) -> ApiKeyList:
    """A user's API keys, revoked ones included (`me` for your own; any user's for an admin)."""
    owner = _key_owner(session, user, user_id)
    rows = session.scalars(select(ApiKey).where(ApiKey.user_id == owner.id).order_by(ApiKey.created_at, ApiKey.id))
    return ApiKeyList(data=[_key_out(row) for row in rows])


@router.post("/v1/users/{user_id}/keys", status_code=201, response_model=ApiKeyCreated, tags=["keys"])
def create_key(user_id: str, session: SessionDep, user: CurrentUser) -> ApiKeyCreated:
    """A new API key; the key is shown only in this answer."""
    row, key = new_key(session, _key_owner(session, user, user_id))
    return _created(row, key)


@router.post("/v1/users/{user_id}/keys/{key_id}/rotate", status_code=201, response_model=ApiKeyCreated,
             tags=["keys"])  # fmt: skip
def rotate(user_id: str, key_id: str, session: SessionDep, user: CurrentUser) -> ApiKeyCreated:
    """A new key in place of this one, which is revoked at once (a revoked key cannot be rotated: 404)."""
    row = _key(session, user, user_id, key_id)
    if row.revoked_at is not None:
        raise NotFound(f"API key {key_id!r} is revoked.")
    new_row, key = rotate_key(session, row)
    return _created(new_row, key)


@router.delete("/v1/users/{user_id}/keys/{key_id}", status_code=204, tags=["keys"])
def revoke(user_id: str, key_id: str, session: SessionDep, user: CurrentUser) -> Response:
    """Revoke a key: it authenticates nothing from now on (revoking a revoked key changes nothing). Your own last
    active key cannot be revoked (409): rotate it instead."""
    row = _key(session, user, user_id, key_id)
    if row.user_id == user.id and row.revoked_at is None:
        active = session.scalar(select(func.count(ApiKey.id)).where(ApiKey.user_id == user.id,
                                                                     ApiKey.revoked_at.is_(None)))  # fmt: skip
        if (active or 0) <= 1:
            raise Conflict("This is your last active API key; rotate it, or create another one first.")
    revoke_key(row)
    return Response(status_code=204)


# The same, for the caller's own keys (API.md v1.1).
@router.get("/v1/me/keys", response_model=ApiKeyList, tags=["keys"])
def list_own_keys(session: SessionDep, user: CurrentUser) -> ApiKeyList:
    """Your API keys, revoked ones included."""
    return list_keys("me", session, user)


@router.post("/v1/me/keys", status_code=201, response_model=ApiKeyCreated, tags=["keys"])
def create_own_key(session: SessionDep, user: CurrentUser) -> ApiKeyCreated:
    """A new API key for yourself; the key is shown only in this answer."""
    return create_key("me", session, user)


@router.post("/v1/me/keys/{key_id}/rotate", status_code=201, response_model=ApiKeyCreated, tags=["keys"])
def rotate_own(key_id: str, session: SessionDep, user: CurrentUser) -> ApiKeyCreated:
    """A new key in place of one of yours, which is revoked at once."""
    return rotate("me", key_id, session, user)


@router.delete("/v1/me/keys/{key_id}", status_code=204, tags=["keys"])
def revoke_own(key_id: str, session: SessionDep, user: CurrentUser) -> Response:
    """Revoke one of your keys (not your last active one: 409)."""
    return revoke("me", key_id, session, user)
