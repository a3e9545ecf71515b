"""The embedded mode's worker: a real Celery worker (the same tasks, never eager mode) in a thread of the API
process, consuming the in-process `memory://` broker's three queues with a small thread pool, and running the
reconciler. (One worker: the memory transport does not serve several consumers in one process.)"""

from __future__ import annotations

import logging
import threading

from celery.worker import WorkController

from core.celery_app import QUEUES
from core.runtime import Runtime
from worker.context import bind_runtime

log = logging.getLogger(__name__)


def start_embedded_worker(runtime: Runtime, concurrency: int = 3) -> WorkController:
    app = runtime.celery
    bind_runtime(runtime)
    app.loader.import_default_modules()
    worker = WorkController(
        app=app,
        hostname="embedded@localhost",
        pool_cls="threads",
        concurrency=concurrency,  # a training does not hold back a generation
        queues=list(QUEUES),
        beat=True,
        schedule_filename=str(runtime.settings.data_dir / "celerybeat-schedule"),  # not in the working directory
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=logging.INFO,
    )
    threading.Thread(target=worker.start, name="celery-embedded", daemon=True).start()
    log.info("embedded worker started on %s", ", ".join(QUEUES))
    return worker


def stop_embedded_worker(worker: WorkController) -> None:
    worker.stop(in_sighandler=False)
    bind_runtime(None)
