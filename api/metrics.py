"""Prometheus metrics: HTTP requests by route template, and jobs by queue and status read at scrape time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response

from core.runtime import Runtime
from models import Job


class JobsCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("svdiff_jobs", "Jobs by queue and status", labels=["queue", "status"])
        try:
            with self.runtime.sessions() as session:
                query = select(Job.queue, Job.status, func.count()).group_by(Job.queue, Job.status)
                for queue, status, count in session.execute(query):
                    gauge.add_metric([queue, status], count)
        except Exception:  # a scrape must not fail because the database is away
            pass
        yield gauge


class Metrics:
    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "svdiff_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "svdiff_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.registry.register(JobsCollector(runtime))

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            self.requests.labels(request.method, route, str(status)).inc()
            self.latency.labels(request.method, route).observe(time.perf_counter() - start)
