"""The database pool per process is sized by the settings (scale-out: the sum over processes must stay below
PostgreSQL's max_connections)."""

from __future__ import annotations

from sqlalchemy.pool import QueuePool

from core.runtime import build_runtime
from core.settings import Settings


def test_pool_size_and_overflow_come_from_the_settings() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://svdiff@127.0.0.1:1/svdiff", secret_key="s" * 40,
        db_pool_size=3, db_max_overflow=1,
    )  # fmt: skip
    runtime = build_runtime(settings)
    try:
        pool = runtime.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 3 and pool._max_overflow == 1  # no public reader for the overflow
    finally:
        runtime.close()


def test_the_defaults_keep_the_previous_pool() -> None:
    fields = Settings.model_fields
    assert (fields["db_pool_size"].default, fields["db_max_overflow"].default) == (10, 20)
