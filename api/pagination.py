"""Cursor pagination over (created_at, id), newest first; cursors are opaque."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session

from core.errors import InvalidInput

T = TypeVar("T")
Out = TypeVar("Out", bound=BaseModel)


class Page(BaseModel, Generic[Out]):
    data: list[Out]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    cursor: tuple[datetime, str] | None


def encode_cursor(created_at: datetime, id_: str) -> str:
    raw = json.dumps([created_at.isoformat(), id_]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, id_ = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive time in cursor")
        if not isinstance(id_, str) or "\x00" in id_:
            raise ValueError("the id of a cursor is a string without NUL")
        return when, id_
    except (ValueError, TypeError) as exc:
        raise InvalidInput("Invalid cursor.", errors=[{"field": "cursor", "detail": "not a cursor"}]) from exc


async def page_params(  # async: no I/O, so no worker thread (api.deps)
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page (1-100).")] = 20,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=decode_cursor(cursor) if cursor else None)


PageDep = Annotated[PageParams, Depends(page_params)]


def paginate(
    session: Session, query: Select[Any], entity: Any, params: PageParams, render: Callable[[Any], Out],
    prefetch: Callable[[Sequence[Any]], None] | None = None,
) -> Page[Out]:  # fmt: skip
    """`query` selects `entity` rows; ordered newest first with `id` as tie-breaker. `prefetch` gets the page's
    rows before they are rendered, to read what rendering them needs at once (`core.views.Presenter.prefetch`)."""
    if params.cursor is not None:
        query = query.where(tuple_(entity.created_at, entity.id) < tuple_(*params.cursor))
    query = query.order_by(entity.created_at.desc(), entity.id.desc()).limit(params.limit + 1)
    rows: Sequence[Any] = session.scalars(query).all()
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    if prefetch is not None:
        prefetch(rows)
    return Page[Any](data=[render(row) for row in rows], next_cursor=next_cursor)
