"""The embedded mode's worker: a real Celery worker (the same tasks, never eager mode) in a thread of the API
process, consuming the in-process `memory://` broker's three queues with a small thread pool, and the reconciler's
clock in another thread. (One worker: the memory transport does not serve several consumers in one process. The
clock must be a thread too: Celery's embedded beat is a forked process by default, whose `memory://` sends would
never reach this process, and which outlives it.)"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from celery.beat import EmbeddedService
from celery.worker import WorkController

from core.celery_app import QUEUES, beat_schedule_file
from core.runtime import Runtime
from worker.context import bind_runtime

log = logging.getLogger(__name__)


@dataclass
class EmbeddedWorker:
    worker: WorkController
    beat: Any  # celery.beat's threaded service


def start_embedded_worker(runtime: Runtime, concurrency: int = len(QUEUES)) -> EmbeddedWorker:
    app = runtime.celery
    bind_runtime(runtime)
    app.loader.import_default_modules()
    worker = WorkController(
        app=app,
        hostname="embedded@localhost",
        pool_cls="threads",
        concurrency=concurrency,  # a training does not hold back a generation
        queues=list(QUEUES),
        beat=False,  # the clock runs below, as a thread of this process
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=logging.INFO,
    )
    threading.Thread(target=worker.start, name="celery-embedded", daemon=True).start()
    beat = EmbeddedService(app, schedule_filename=beat_schedule_file(runtime.settings), thread=True)
    beat.start()
    log.info("embedded worker started on %s, with the reconciler's clock", ", ".join(QUEUES))
    return EmbeddedWorker(worker, beat)


def stop_embedded_worker(embedded: EmbeddedWorker) -> None:
    embedded.beat.stop()
    embedded.worker.stop(in_sighandler=False)
    bind_runtime(None)
