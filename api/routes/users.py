from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import AdminUser, CurrentUser, SessionDep
from api.pagination import Page, PageDep, paginate
from api.schemas import UserCreate, UserCreated, UserOut
from core.accounts import create_user
from models import User

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
