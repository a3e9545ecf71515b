"""One Runtime per worker process (or per Celery app in the embedded mode), built on first use."""

from __future__ import annotations

import os
import socket
import threading

from celery import Celery

from core.runtime import Runtime, build_runtime
from core.settings import get_settings

_runtimes: dict[int, Runtime] = {}
_lock = threading.Lock()


def runtime_for(app: Celery) -> Runtime:
    with _lock:
        if id(app) not in _runtimes:
            _runtimes[id(app)] = build_runtime(get_settings(), celery=app)
        return _runtimes[id(app)]


def worker_id(hostname: str | None = None) -> str:
    return f"{hostname or socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"
