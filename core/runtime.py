"""Everything a process needs, built once from the settings: the API keeps one on `app.state`, a worker one per
process. Passed explicitly, so tests build theirs from their own settings."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.celery_app import make_celery
from core.db import make_engine, make_sessionmaker
from core.events import Hub, make_hub
from core.settings import Settings
from core.storage import Storage, make_storage


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    celery: Celery
    events: Hub  # change notices for the live event streams

    def close(self) -> None:
        self.engine.dispose()


def build_runtime(settings: Settings, celery: Celery | None = None, storage: Storage | None = None) -> Runtime:
    engine = make_engine(settings.db_url, settings.db_pool_size, settings.db_max_overflow)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        storage=storage or make_storage(settings),
        celery=celery or make_celery(settings),
        events=make_hub(settings.broker_url, settings.broker_transport_options),
    )
