"""What every job task shares: claiming the row (attempt counter, takeover of a lost job), the heartbeat, the
progress callback that also carries cancel, and the final states."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from core.db import after_commit, session_scope
from core.errors import StorageUnavailable
from core.events import job_channel
from core.fairness import next_in_line
from core.jobs import change_status, fail
from core.liveness import is_silent
from core.runtime import Runtime
from models import CANCELED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, utcnow
from worker.method import Canceled

log = logging.getLogger(__name__)
J = TypeVar("J", bound=Job)
R = TypeVar("R")
TRANSIENT_DB = (OperationalError, InterfaceError)  # a database restarting, a dropped connection
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 10.0


def retrying(runtime: Runtime, what: str, write: Callable[[], R], sleep: Callable[[float], None] = time.sleep) -> R:
    """`write()`, retried with exponential backoff while the database is unreachable, for up to
    `db_retry_seconds`; then the last error is raised (the job stays running and the reconciler takes it over)."""
    deadline = time.monotonic() + runtime.settings.db_retry_seconds
    delay = BACKOFF_FIRST_S
    while True:
        try:
            return write()
        except TRANSIENT_DB as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unreachable (%s); retrying in %.1f s", what, type(exc).__name__, delay)
            sleep(delay)
            delay = min(2 * delay, BACKOFF_MAX_S)


class JobLost(Exception):
    """The row is gone (deleted) or another worker took the job over: stop without touching it."""


def claim(runtime: Runtime, job_id: str, worker: str) -> Job | None:
    """Mark the named job running for this worker and count the attempt; None when there is nothing to do."""
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            return None
        if not (job.status == QUEUED or is_silent(session, runtime.settings, job)):
            log.info("job %s is %s: nothing to do", job_id, job.status)
            return None
        return _take(session, runtime, job, worker)


def claim_next(runtime: Runtime, queue: str, hint: str, worker: str) -> Job | None:
    """The job a message of `queue` stands for: the one it names when that job's worker went silent (a redelivery
    after a lost worker), else the first queued job in the fair order (`core.fairness`): messages are fungible
    tokens, one per job sent, and the database decides which job runs next. None when nothing waits."""
    with _claim_lock(runtime), session_scope(runtime.sessions) as session:
        named = session.get(Job, hint)  # locked only when it is to be taken over: another claim may hold it
        if named is not None and named.queue == queue and is_silent(session, runtime.settings, named):
            session.refresh(named, with_for_update=True)
            if is_silent(session, runtime.settings, named):
                return _take(session, runtime, named, worker)
        while (job := session.scalar(next_in_line(queue))) is not None:
            if _take(session, runtime, job, worker) is not None:
                return job
        return None


_SQLITE_CLAIMS = threading.Lock()


def _claim_lock(runtime: Runtime) -> AbstractContextManager[object]:
    """SQLite has no row locks: the embedded default (one process) serializes its claims on a process lock."""
    return _SQLITE_CLAIMS if runtime.engine.dialect.name == "sqlite" else nullcontext()


def _take(session: Session, runtime: Runtime, job: Job, worker: str) -> Job | None:
    """Count the attempt and mark the job running for `worker`; a job out of attempts fails instead (None)."""
    settings = runtime.settings
    job.attempts += 1
    if job.attempts > settings.max_job_attempts:
        if job.status == QUEUED:
            change_status(session, runtime, job, RUNNING)
        fail(session, runtime, job, "TooManyAttempts", f"gave up after {settings.max_job_attempts} attempts")
        return None
    job.worker_id, job.heartbeat_at = worker, utcnow()
    job.pace_from_at, job.pace_from_step = None, 0  # this attempt's pace starts at its own first step
    if job.status == QUEUED:
        change_status(session, runtime, job, RUNNING)
    return job


def load_job(runtime: Runtime, kind: type[J], job_id: str, worker: str) -> J:
    with runtime.sessions() as session:
        job = session.scalar(select(kind).where(kind.id == job_id))
        if job is None or job.worker_id != worker or job.status != RUNNING:
            raise JobLost(job_id)
        return job


class Progress:
    """`progress(step, total)`: writes step/total and the heartbeat at most every `interval` seconds; returns
    False once a cancel was requested or the job was lost. A write the database does not take is retried with
    backoff (`retrying`): the training waits for a restarting database instead of losing its attempt."""

    def __init__(self, runtime: Runtime, job_id: str, worker: str) -> None:
        self.runtime, self.job_id, self.worker = runtime, job_id, worker
        self.interval = runtime.settings.progress_interval_seconds
        self.last_write = 0.0
        self.cancel_requested = False
        self.lost = False
        self.stepped = False
        self.last_step_at = time.monotonic()

    def stalled(self) -> bool:
        """No step for longer than a job may take over one (before the first: over its preparation)."""
        settings = self.runtime.settings
        bound = settings.step_timeout_seconds if self.stepped else settings.prepare_timeout_seconds
        return time.monotonic() - self.last_step_at > bound

    def __call__(self, step: int, total: int) -> bool:
        now = time.monotonic()
        self.stepped, self.last_step_at = True, now
        if now - self.last_write >= self.interval or step >= total:
            self.last_write = now
            retrying(self.runtime, f"progress of job {self.job_id}", lambda: self._write(step, total))
        return not (self.cancel_requested or self.lost)

    def _write(self, step: int, total: int) -> None:
        with session_scope(self.runtime.sessions) as session:
            mine = (Job.id == self.job_id, Job.worker_id == self.worker, Job.status == RUNNING)
            now, first = utcnow(), Job.pace_from_at.is_(None)
            done = session.execute(
                update(Job).where(*mine).values(
                    progress_step=step, progress_total=total, heartbeat_at=now,
                    pace_from_at=func.coalesce(Job.pace_from_at, now),
                    pace_from_step=case((first, step), else_=Job.pace_from_step),
                )
            )  # fmt: skip
            if getattr(done, "rowcount", 1) == 0:
                self.lost = True
                return
            job_id = self.job_id
            after_commit(session, lambda: self.runtime.events.publish(job_channel(job_id)))
            self.cancel_requested = bool(session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))


@contextmanager
def heartbeat(runtime: Runtime, job_id: str, worker: str, progress: Progress | None = None) -> Iterator[None]:
    """Keep `heartbeat_at` fresh while the job makes progress, so the reconciler leaves it alone. Liveness is
    progress, not a live thread: once `progress` stalls (a wedged step) the beats stop, the heartbeat goes stale,
    and the reconciler gives the job to another worker."""
    stop = threading.Event()
    every = max(runtime.settings.heartbeat_timeout_seconds / 4, 1.0)

    def beat() -> None:
        while not stop.wait(every):
            if progress is not None and progress.stalled():
                log.warning("job %s made no progress within its bound; no heartbeat", job_id)
                continue
            try:
                with session_scope(runtime.sessions) as session:
                    session.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.worker_id == worker, Job.status == RUNNING)
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:  # the next beat tries again; a database down for long lets the job go stale
                log.warning("heartbeat of job %s failed", job_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def owned_running(session: Session, job_id: str, worker: str) -> Job | None:
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.worker_id != worker or job.status != RUNNING:
        return None
    return job


def finish(runtime: Runtime, job_id: str, worker: str, status: str, error: tuple[str, str] | None = None) -> bool:
    """A final state without results, unless the job was lost meanwhile. Returns whether it was written."""
    with session_scope(runtime.sessions) as session:
        job = owned_running(session, job_id, worker)
        if job is None:
            return False
        change_status(session, runtime, job, status, error=error)
        return True


Work = Callable[[J, Progress], Callable[[Session, J], None]]
INFRASTRUCTURE = (StorageUnavailable, OperationalError, InterfaceError)


def run_job(
    runtime: Runtime, kind: type[J], job_id: str, worker: str, work: Work[J], discard: Callable[[J], None] | None = None
) -> str:
    """Claim the named job, run `work` (which calls the method and returns the writer of its results), then store
    the results and the final status in one transaction. Returns the outcome, for logs and tests. When the job
    ends without results (canceled, failed, or its row deleted meanwhile: not taken over by another worker),
    `discard` removes what the work stored on the way (a training's resumable state, say)."""
    if claim(runtime, job_id, worker) is None:
        return "skipped"
    return _run_claimed(runtime, kind, job_id, worker, work, discard)


@dataclass(frozen=True)
class Handler(Generic[J]):
    """How a worker runs one kind of job."""

    kind: type[J]
    work: Work[J]
    discard: Callable[[J], None] | None = None


def run_next(runtime: Runtime, queue: str, hint: str, worker: str, handlers: dict[str, Handler[Any]]) -> str:
    """What a task of `queue` does with its message: claim the next job in the fair order and run it as
    `run_job` does, with the handler of its kind."""
    job = claim_next(runtime, queue, hint, worker)
    if job is None:
        return "skipped"
    handler = handlers[job.kind]
    return _run_claimed(runtime, handler.kind, job.id, worker, handler.work, handler.discard)


def _run_claimed(
    runtime: Runtime, kind: type[J], job_id: str, worker: str, work: Work[J], discard: Callable[[J], None] | None
) -> str:
    try:
        job = load_job(runtime, kind, job_id, worker)
    except JobLost:
        return "lost"
    outcome = _run(runtime, kind, job, worker, work)
    if discard is not None and _ended_without_results(runtime, job_id, outcome):
        try:
            discard(job)
        except Exception:
            log.warning("could not discard what %s %s left in storage", kind.__name__, job_id, exc_info=True)
    return outcome


def _ended_without_results(runtime: Runtime, job_id: str, outcome: str) -> bool:
    if outcome in (CANCELED, FAILED):
        return True
    if outcome != "lost":
        return False
    with runtime.sessions() as session:
        return session.get(Job, job_id) is None  # deleted, rather than taken over by another worker


def _run(runtime: Runtime, kind: type[J], job: J, worker: str, work: Work[J]) -> str:
    job_id = job.id
    progress = Progress(runtime, job_id, worker)
    try:
        with heartbeat(runtime, job_id, worker, progress):
            write_results = work(job, progress)
        if progress.lost:
            raise JobLost(job_id)
        if progress.cancel_requested:
            raise Canceled()
    except JobLost:
        return "lost"
    except Canceled:
        return CANCELED if finish(runtime, job_id, worker, CANCELED) else "lost"
    except INFRASTRUCTURE:
        raise  # the job stays running; its heartbeat goes stale and the reconciler retries it
    except Exception as exc:
        return _failed(runtime, kind, job_id, worker, exc)
    def store() -> bool:
        with session_scope(runtime.sessions) as session:
            owned = owned_running(session, job_id, worker)
            if owned is None or not isinstance(owned, kind):
                return False
            write_results(session, owned)
            owned.progress_step = max(owned.progress_step, owned.progress_total)
            change_status(session, runtime, owned, SUCCEEDED)
            return True

    try:
        if not retrying(runtime, f"results of job {job_id}", store):
            return "lost"
    except INFRASTRUCTURE:
        raise
    except Exception as exc:  # results the database refuses (a bug, a value out of range): fail now, not at the
        return _failed(runtime, kind, job_id, worker, exc)  # reconciler's timeout, and never retried
    return SUCCEEDED


def _failed(runtime: Runtime, kind: type[Job], job_id: str, worker: str, exc: Exception) -> str:
    log.exception("%s %s failed", kind.__name__, job_id)
    detail = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc) or repr(exc)  # a database error: no SQL
    return FAILED if finish(runtime, job_id, worker, FAILED, (type(exc).__name__, detail)) else "lost"
