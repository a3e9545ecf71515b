"""How fast each queue drains, measured: jobs finished per second over the last `window` seconds, kept for
`ttl` seconds per process so that reading many queued jobs costs one count per queue, not one per job. A queued job's
ETA is then its place in line over that rate."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import FAILED, SUCCEEDED, Job, utcnow

WINDOW_SECONDS = 900.0
TTL_SECONDS = 15.0


class QueueThroughput:
    def __init__(self, window: float = WINDOW_SECONDS, ttl: float = TTL_SECONDS) -> None:
        self.window, self.ttl = window, ttl
        self._lock = threading.Lock()
        self._rates: dict[str, tuple[float, float | None]] = {}  # queue -> (measured at, jobs per second)

    def jobs_per_second(self, session: Session, queue: str) -> float | None:
        """None when no job of the queue finished within the window (nothing to go by)."""
        now = time.monotonic()
        with self._lock:
            cached = self._rates.get(queue)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        since = utcnow() - timedelta(seconds=self.window)
        finished = session.scalar(
            select(func.count(Job.id)).where(
                Job.queue == queue, Job.finished_at > since, Job.status.in_((SUCCEEDED, FAILED))
            )
        )
        rate = (finished or 0) / self.window or None
        with self._lock:
            self._rates[queue] = (now, rate)
        return rate

    def queued_eta(self, session: Session, queue: str, position: int) -> float | None:
        """Seconds until a job with `position` jobs ahead of it has finished, at the measured rate."""
        rate = self.jobs_per_second(session, queue)
        return None if rate is None else round((position + 1) / rate, 1)


THROUGHPUT = QueueThroughput()
