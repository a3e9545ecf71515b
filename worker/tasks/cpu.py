"""CPU queue: webhook deliveries, storage clean-ups and the reconciler. GPU tasks never wait on the network."""

from __future__ import annotations

from celery import Task, shared_task

from core.celery_app import DELETE_PREFIXES, DELIVER_WEBHOOK, RECONCILE
from worker.context import runtime_for
from worker.reconciler import reconcile as reconcile_once
from worker.webhooks import deliver


@shared_task(name=DELIVER_WEBHOOK, bind=True, max_retries=None)
def deliver_webhook(self: Task, delivery_id: str) -> None:
    wait = deliver(runtime_for(self.app), delivery_id)
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task(
    name=DELETE_PREFIXES, bind=True, autoretry_for=(Exception,), retry_backoff=30, retry_backoff_max=3600,
    max_retries=50,
)  # fmt: skip
def delete_prefixes(self: Task, prefixes: list[str]) -> int:
    storage = runtime_for(self.app).storage
    return sum(storage.delete_prefix(prefix) for prefix in prefixes)


@shared_task(name=RECONCILE, bind=True)
def reconcile(self: Task) -> dict[str, int]:
    return reconcile_once(runtime_for(self.app))
