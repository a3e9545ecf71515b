"""Database engine and session factory, shared by the API and the workers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # the embedded API and worker threads share the file
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """SQLite for the embedded mode; anything else with a pool of `pool_size` connections kept open and up to
    `max_overflow` more under load, per process."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow, connect_args={"connect_timeout": 5}
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: responses are built from them once the transaction is over.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction (a worker step, an API request): commit on success, roll back on error."""
    session = factory()
    try:
        yield session
    except BaseException as exc:
        end_scope(session, exc)
        raise
    end_scope(session, None)


def end_scope(session: Session, error: BaseException | None) -> None:
    """The end of a `session_scope` (also the API's request session, `api.deps.get_session`): without `error`,
    commit, then the after-commit actions; with one (or if the commit fails), roll back and run the on-rollback
    actions instead. Closes the session either way; a failed commit's error propagates."""
    try:
        if error is None:
            try:
                session.commit()
            except BaseException:
                _rolled_back(session)
                raise
            run_after_commit(session)
        else:
            _rolled_back(session)
    finally:
        session.close()


def _rolled_back(session: Session) -> None:
    session.rollback()
    discard_after_commit(session)
    run_on_rollback(session)


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A SAVEPOINT: an error inside rolls back only what was done inside (and propagates); the rest of the
    transaction stays usable. On SQLite, pysqlite opens a transaction only at the first write, and a SAVEPOINT
    outside one would start a transaction that its RELEASE commits: the transaction is opened first."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        raw = connection.connection.dbapi_connection
        if raw is not None and not raw.in_transaction:
            connection.exec_driver_sql("BEGIN")
    with session.begin_nested():
        yield


def after_commit(session: Session, action: Callable[[], object]) -> None:
    """Run `action` once the session's transaction has committed (tasks are sent only for committed rows)."""
    session.info.setdefault("after_commit", []).append(action)


def on_rollback(session: Session, action: Callable[[], None]) -> None:
    """Run `action` if the session's transaction rolls back instead (a blob stored for rows that never were)."""
    session.info.setdefault("on_rollback", []).append(action)


def run_on_rollback(session: Session) -> None:
    for action in session.info.pop("on_rollback", []):
        try:
            action()
        except Exception:
            log.exception("on-rollback action failed")


def run_after_commit(session: Session) -> None:
    session.info.pop("on_rollback", None)
    actions: list[Callable[[], None]] = session.info.pop("after_commit", [])
    for action in actions:
        try:
            action()
        except Exception:  # the rows are committed; the reconciler sends what could not be sent now
            log.exception("after-commit action failed")


def discard_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)
