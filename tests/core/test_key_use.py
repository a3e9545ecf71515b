"""Recording a key's use never waits: a request whose key's row another transaction holds (recording the same use)
goes on without writing, where it used to queue behind that transaction's commit (and in the API could deadlock)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event, select, text

from core.accounts import create_user, user_for_key
from core.db import session_scope
from models import ApiKey, utcnow


def test_a_use_is_recorded_once_and_a_locked_row_is_left_alone(runtime: Any) -> None:
    with session_scope(runtime.sessions) as session:
        user, key = create_user(session, "key-use")
        user_id = user.id
    first, second = runtime.sessions(), runtime.sessions()
    try:
        assert user_for_key(first, key).id == user_id  # records the use: the key's row is locked until it commits
        first.flush()  # as the request's next query would
        second.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting for the row would fail this
        assert user_for_key(second, key).id == user_id
        second.flush()
        second.commit()
        first.commit()
    finally:
        first.close()
        second.close()
    with runtime.sessions() as session:
        used = session.scalar(select(ApiKey.last_used_at).where(ApiKey.user_id == user_id))
        assert used is not None and utcnow() - used < timedelta(minutes=1)


def test_a_recent_use_is_not_written_again(runtime: Any) -> None:
    with session_scope(runtime.sessions) as session:
        _, key = create_user(session, "key-use-recent")
    with session_scope(runtime.sessions) as session:
        user_for_key(session, key)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        with session_scope(runtime.sessions) as session:
            assert user_for_key(session, key) is not None
    finally:
        event.remove(runtime.engine, "before_cursor_execute", count)
    assert not [statement for statement in statements if statement.startswith("UPDATE")]
