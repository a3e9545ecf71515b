"""The Celery app: configuration, queues and routing by task name. Importable without torch.

The API sends tasks by name (`send`), never importing the task modules; only worker processes import them
(`include`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu import Queue

from core.errors import BrokerUnavailable
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

TRAIN = "svdiff.train"
GENERATE = "svdiff.generate"
EDIT = "svdiff.edit"
EXPORT_LORA = "svdiff.export_lora"
DELIVER_WEBHOOK = "svdiff.deliver_webhook"
DELETE_PREFIXES = "svdiff.delete_prefixes"
RECONCILE = "svdiff.reconcile"

# Webhook deliveries wait on receivers: on a queue of their own, clean-ups and the reconciler never wait behind them.
QUEUES = ("training", "inference", "cpu", "webhooks")
ROUTES = {
    TRAIN: "training",
    GENERATE: "inference",
    EDIT: "inference",
    EXPORT_LORA: "inference",
    DELIVER_WEBHOOK: "webhooks",
    DELETE_PREFIXES: "cpu",
    RECONCILE: "cpu",
}
TASK_OF_KIND = {"training": TRAIN, "generation": GENERATE, "edit": EDIT}
TASK_MODULES = ["worker.tasks.cpu", "worker.tasks.training", "worker.tasks.inference"]


def make_celery(settings: Settings) -> Celery:
    app = Celery("svdiff", broker=settings.broker_url, include=TASK_MODULES)
    app.conf.update(
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="cpu",
        task_routes={name: {"queue": queue} for name, queue in ROUTES.items()},
        task_acks_late=True,  # a task is acknowledged when it ends, so a killed worker's job is redelivered
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # the database row is the job's state; no result backend
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout,
            **settings.broker_transport_options,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        beat_schedule={
            "reconcile": {"task": RECONCILE, "schedule": settings.reconcile_every_seconds},
        },
        timezone="UTC",
        task_annotations=time_limits(settings),
    )
    return app


def time_limits(settings: Settings) -> dict[str, dict[str, int]]:
    """Soft limit (the task fails with SoftTimeLimitExceeded as its reason), then the hard one a minute later."""
    inference = settings.inference_time_limit_seconds
    limits = {TRAIN: settings.training_time_limit_seconds, GENERATE: inference, EDIT: inference, EXPORT_LORA: inference}
    return {task: {"soft_time_limit": limit, "time_limit": limit + 60} for task, limit in limits.items()}


@lru_cache
def default_app() -> Celery:
    return make_celery(get_settings())


def send(app: Celery, name: str, args: list[Any], *, task_id: str | None = None, countdown: float = 0) -> None:
    """Publish a task by name to its queue; a broker that does not answer raises BrokerUnavailable."""
    try:
        app.send_task(name, args=args, task_id=task_id, queue=ROUTES[name], countdown=countdown or None)
    except Exception as exc:  # kombu/redis raise many types; all mean "not sent"
        log.warning("could not send %s%s: %s", name, args, exc)
        raise BrokerUnavailable(f"the task broker is unavailable ({type(exc).__name__})") from exc


def check_broker(app: Celery, timeout: float = 3.0) -> None:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:
        raise BrokerUnavailable(f"the task broker is unavailable ({type(exc).__name__})") from exc


def beat_schedule_file(settings: Settings) -> str:
    """Where the reconciler's clock keeps its last-run times: the data folder, or the temporary folder when that
    is not writable (the images run as an unprivileged user in a read-only /app); losing it costs nothing."""
    folder = settings.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return str(folder / "celerybeat-schedule")
    except OSError:
        pass
    return os.path.join(tempfile.gettempdir(), "svdiff-celerybeat-schedule")
