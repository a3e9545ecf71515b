"""The embedded mode's worker: real Celery workers (the same tasks, never eager mode) in threads of the API
process, one per queue, consuming the in-process `memory://` broker; the CPU one also runs the reconciler."""

from __future__ import annotations

import logging
import threading

from celery import Celery
from celery.worker import WorkController

from core.celery_app import QUEUES

log = logging.getLogger(__name__)


def start_embedded_workers(app: Celery, queues: tuple[str, ...] = QUEUES) -> list[WorkController]:
    app.loader.import_default_modules()
    workers = []
    for queue in queues:
        worker = WorkController(
            app=app,
            hostname=f"embedded-{queue}@localhost",
            pool_cls="solo",
            concurrency=1,
            queues=[queue],
            beat=queue == "cpu",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel=logging.INFO,
        )
        threading.Thread(target=worker.start, name=f"celery-{queue}", daemon=True).start()
        workers.append(worker)
    log.info("embedded workers started for %s", ", ".join(queues))
    return workers


def stop_embedded_workers(workers: list[WorkController]) -> None:
    for worker in workers:
        worker.stop(in_sighandler=False)
