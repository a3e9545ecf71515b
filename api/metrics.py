"""Prometheus metrics: HTTP requests by route template; and, read at scrape time for dashboards and autoscalers,
jobs by queue and status, queue depth (messages in the broker, jobs queued in the database), running jobs, the
oldest queued job's age and worker liveness (from the jobs' heartbeats).

What is read from the database or the broker is cached for `cache_seconds` per process, so scrapes (from every
replica, as often as they come) cannot hammer either. A dependency that does not answer drops its series from the
scrape and is logged; the scrape itself still answers 200 (`svdiff_metrics_source_up` says which one is missing).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Executable, func, or_, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.celery_app import QUEUES
from core.queue_depth import queue_lengths
from core.runtime import Runtime
from models import QUEUE_OF_KIND, QUEUED, RUNNING, Job, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
CACHE_SECONDS = 5.0
WORKERS_SEEN_SECONDS = 300  # "seen": beat for a job within this window
JOB_QUEUES = tuple(sorted(set(QUEUE_OF_KIND.values())))  # the queues jobs wait on (cpu and webhooks carry none)


class Cached(Generic[T]):
    """`read()` at most once per `seconds` per process; its answer (None: it failed) is kept meanwhile, so a
    dependency that is down is not asked again by every scrape either."""

    def __init__(self, read: Callable[[], T | None], seconds: float) -> None:
        self.read, self.seconds = read, seconds
        self.value: T | None = None
        self.expires = float("-inf")
        self.lock = threading.Lock()

    def get(self) -> T | None:
        with self.lock:
            now = time.monotonic()
            if now >= self.expires:
                self.value = self.read()
                self.expires = now + self.seconds
            return self.value


@dataclass(frozen=True)
class JobSnapshot:
    counts: dict[tuple[str, str], int]  # (queue, status) -> jobs
    oldest_queued: dict[str, datetime]  # queue -> created_at of its oldest queued job
    heartbeats: dict[tuple[str, str], datetime]  # (worker, queue) -> last heartbeat, workers holding a running job
    workers_seen: dict[str, int]  # queue -> workers that beat for one of its jobs within WORKERS_SEEN_SECONDS


def job_queries() -> tuple[Executable, ...]:
    """Grouped reads over indexed columns: counts by status, oldest queued, heartbeats, workers seen."""
    since = utcnow() - timedelta(seconds=WORKERS_SEEN_SECONDS)
    holder = Job.worker_id.is_not(None)
    # heartbeat_at <= finished_at: a job that beat since then is running or finished since then (indexed filters)
    recent = (holder, Job.heartbeat_at >= since, or_(Job.status == RUNNING, Job.finished_at >= since))
    workers = func.count(func.distinct(Job.worker_id))
    return (
        select(Job.queue, Job.status, func.count()).group_by(Job.queue, Job.status),
        select(Job.queue, func.min(Job.created_at)).where(Job.status == QUEUED).group_by(Job.queue),
        select(Job.worker_id, Job.queue, func.max(Job.heartbeat_at))
        .where(Job.status == RUNNING, holder)
        .group_by(Job.worker_id, Job.queue),
        select(Job.queue, workers).where(*recent).group_by(Job.queue),
    )


def read_jobs(runtime: Runtime) -> JobSnapshot | None:
    """The job series' data, read in one session; None (logged) when the database does not answer."""
    try:
        with runtime.sessions() as session:
            counts, oldest, beats, seen = (session.execute(query).all() for query in job_queries())
            return JobSnapshot(
                counts={(queue, status): int(n) for queue, status, n in counts},
                oldest_queued={queue: at for queue, at in oldest if at is not None},
                heartbeats={(str(worker), queue): at for worker, queue, at in beats if at is not None},
                workers_seen={queue: int(n) for queue, n in seen},
            )
    except Exception as exc:  # a scrape must not fail because the database is away
        log.warning("metrics: the database did not answer (%s); job series skipped", type(exc).__name__)
        return None


def read_broker(runtime: Runtime) -> dict[str, int] | None:
    """Messages waiting per queue; None when the broker counted none of them (it is down: logged there)."""
    lengths = queue_lengths(runtime, QUEUES)
    return lengths or None


Samples = list[tuple[list[str], float]]


def gauge(name: str, documentation: str, labels: list[str], samples: Samples) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric(values, float(value))
    return family


def job_families(jobs: JobSnapshot, now: datetime) -> Iterator[GaugeMetricFamily]:
    queues = sorted(set(JOB_QUEUES) | {queue for queue, _ in jobs.counts})

    def per_queue(value: Callable[[str], float]) -> Samples:
        return [([queue], value(queue)) for queue in queues]

    def oldest(queue: str) -> float:
        at = jobs.oldest_queued.get(queue)
        return 0.0 if at is None else _age(at, now)

    by_status: Samples = [([queue, status], n) for (queue, status), n in sorted(jobs.counts.items())]
    beats: Samples = [([worker, queue], _age(at, now)) for (worker, queue), at in sorted(jobs.heartbeats.items())]
    yield gauge("svdiff_jobs", "Jobs by queue and status", ["queue", "status"], by_status)
    yield gauge("svdiff_jobs_queued", "Jobs queued in the database, waiting for a worker", ["queue"],
                per_queue(lambda q: jobs.counts.get((q, QUEUED), 0)))  # fmt: skip
    yield gauge("svdiff_jobs_running", "Jobs a worker is running", ["queue"],
                per_queue(lambda q: jobs.counts.get((q, RUNNING), 0)))  # fmt: skip
    yield gauge("svdiff_jobs_oldest_queued_age_seconds", "Age of the oldest queued job since its creation (0: none)",
                ["queue"], per_queue(oldest))  # fmt: skip
    yield gauge("svdiff_worker_heartbeat_age_seconds", "Seconds since the last heartbeat of a worker that holds a "
                "running job", ["worker", "queue"], beats)  # fmt: skip
    yield gauge("svdiff_workers_seen", f"Workers that beat for a job of the queue in the last {WORKERS_SEEN_SECONDS} s",
                ["queue"], per_queue(lambda q: jobs.workers_seen.get(q, 0)))  # fmt: skip


def broker_families(lengths: dict[str, int]) -> Iterator[GaugeMetricFamily]:
    messages: Samples = [([queue], n) for queue, n in sorted(lengths.items())]
    yield gauge("svdiff_broker_queue_messages", "Messages waiting in the broker's queue, not yet taken by a worker",
                ["queue"], messages)  # fmt: skip


def _age(at: datetime, now: datetime) -> float:
    return max((now - at).total_seconds(), 0.0)


class QueueCollector(Collector):
    """Queue depth, jobs and worker liveness, read at scrape time through per-process caches."""

    def __init__(self, runtime: Runtime, cache_seconds: float = CACHE_SECONDS) -> None:
        self.jobs = Cached(lambda: read_jobs(runtime), cache_seconds)
        self.broker = Cached(lambda: read_broker(runtime), cache_seconds)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs, lengths = self.jobs.get(), self.broker.get()
        up: Samples = [(["database"], float(jobs is not None)), (["broker"], float(lengths is not None))]
        yield gauge("svdiff_metrics_source_up", "Whether the last read of a source of these metrics answered",
                    ["source"], up)  # fmt: skip
        if jobs is not None:
            yield from job_families(jobs, utcnow())
        if lengths is not None:
            yield from broker_families(lengths)


class Metrics:
    def __init__(self, runtime: Runtime, cache_seconds: float = CACHE_SECONDS) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "svdiff_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "svdiff_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.registry.register(QueueCollector(runtime, cache_seconds))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class MetricsMiddleware:
    """Counts every HTTP request by method, route template and status, and its latency to the response's start (a
    live event stream counts when it starts, not when it ends). A plain ASGI middleware: Starlette's
    `BaseHTTPMiddleware` ran each request through a task group and a memory stream, a tenth of a simple read's CPU
    (README "API under load")."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            if not observed:
                observed = True
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.observe(scope["method"], route, status, time.perf_counter() - start)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            observe(500)  # nothing was sent: the app raised (no-op when the answer started)
