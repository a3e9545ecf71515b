"""The Runtime of a worker process, built from the settings on first use; the embedded mode binds the API's own
(same engine, same storage) instead."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading

from celery import Celery

from core.runtime import Runtime, build_runtime
from core.settings import get_settings
from core.storage import RetryingStorage

_runtime: Runtime | None = None
_lock = threading.Lock()


def runtime_for(app: Celery) -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings(), celery=app)
        return _runtime


def job_runtime(runtime: Runtime) -> Runtime:
    """The runtime a job task runs with: its storage waits out an outage (`core.storage.RetryingStorage`, up to
    `storage_retry_seconds`) instead of failing the attempt. The reconciler and clean-ups keep the plain storage:
    they must not stall on a server that is down (the outbox retries them later)."""
    if isinstance(runtime.storage, RetryingStorage):
        return runtime
    storage = RetryingStorage(runtime.storage, runtime.settings.storage_retry_seconds)
    return dataclasses.replace(runtime, storage=storage)


def bind_runtime(runtime: Runtime | None) -> None:
    """Tasks of this process use `runtime` (None: build one from the settings again on next use)."""
    global _runtime
    with _lock:
        _runtime = runtime


def worker_id(hostname: str | None = None) -> str:
    return f"{hostname or socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"
