from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, StatementError

from core import migrate
from core.accounts import create_user, user_for_key
from core.db import make_engine, make_sessionmaker
from models import Photo, Subject


@pytest.fixture
def sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 't.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_datetimes_come_back_aware_utc_on_sqlite(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as session:
        user, _ = create_user(session, "a")
        user.created_at = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        session.commit()
        session.expire_all()
        assert session.get(type(user), user.id).created_at == datetime(2030, 1, 1, 10, tzinfo=UTC)
        user.created_at = datetime(2030, 1, 1)  # naive: refused
        with pytest.raises(StatementError):
            session.commit()


def test_keys_are_stored_hashed(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as session:
        user, key = create_user(session, "a")
        session.commit()
        assert user.api_keys[0].key_hash != key and key not in user.api_keys[0].key_hash
        assert user_for_key(session, key) is user
        assert user_for_key(session, key + "x") is None


def test_subject_tokens_are_unique_per_user_and_photos_cascade(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as session:
        user, _ = create_user(session, "a")
        subject = Subject(user_id=user.id, name="a", class_word="dog", token="sks")
        session.add(subject)
        session.flush()
        session.add(Photo(subject_id=subject.id, user_id=user.id, storage_key="k", content_type="image/png",
                          width=1, height=1, size_bytes=1, sha256="0"))  # fmt: skip
        session.commit()
        session.refresh(subject)
        assert subject.photo_count == 1
        session.add(Subject(user_id=user.id, name="b", class_word="cat", token="sks"))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        session.delete(subject)
        session.commit()
        assert session.query(Photo).count() == 0
