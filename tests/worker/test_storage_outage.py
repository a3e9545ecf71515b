"""An S3 outage of seconds (`make bench-faults`, "s3-down-30s"): before, a job's storage call that failed left the
job running with a stale heartbeat for the reconciler, costing it an attempt; the worker then claimed the next
job, which failed the same way, so an outage of 30 s took an attempt from every job in the backlog and failed
some for good (WorkerLost, attempts spent). A job task's storage now waits out the outage
(`core.storage.RetryingStorage`, `storage_retry_seconds`)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import httpx
import pytest

from core.errors import BlobNotFound, StorageUnavailable
from core.storage import RetryingStorage
from models import Job
from tests.worker.fake_method import FakeMethod
from tests.worker.test_training_task import new_training, run
from worker.context import job_runtime


class Outage:
    """Storage whose calls fail (StorageUnavailable) while `down`; `calls_down` counts the refused ones."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.down, self.calls_down = inner, False, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down and name not in ("presigned_url",):
                self.calls_down += 1
                raise StorageUnavailable("storage unreachable: EndpointConnectionError")
            return method(*args, **kwargs)

        return call


class Blobs:
    def __init__(self, failures: int) -> None:
        self.failures, self.blobs = failures, {}  # type: ignore[var-annotated]

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageUnavailable("storage unreachable")

    def put(self, key: str, data: bytes, content_type: str = "") -> None:
        self._maybe_fail()
        self.blobs[key] = data

    def get(self, key: str) -> bytes:
        self._maybe_fail()
        if key not in self.blobs:
            raise BlobNotFound(key)
        return bytes(self.blobs[key])


def test_retrying_storage_backs_off_then_gives_up() -> None:
    slept: list[float] = []
    storage = RetryingStorage(Blobs(failures=3), seconds=60, sleep=slept.append)  # type: ignore[arg-type]
    storage.put("a", b"1")
    assert slept == [0.5, 1.0, 2.0]
    assert storage.get("a") == b"1"
    with pytest.raises(BlobNotFound):  # an answer, not an outage: not retried
        storage.get("missing")
    assert slept == [0.5, 1.0, 2.0]
    with pytest.raises(StorageUnavailable):
        RetryingStorage(Blobs(failures=1), seconds=0, sleep=slept.append).put("b", b"2")  # type: ignore[arg-type]


def test_job_runtime_wraps_storage_once(runtime: Any) -> None:
    wrapped = job_runtime(runtime)
    assert isinstance(wrapped.storage, RetryingStorage) and wrapped.storage.inner is runtime.storage
    assert job_runtime(wrapped) is wrapped
    assert not isinstance(runtime.storage, RetryingStorage)  # the reconciler's stays plain


def _outage_during(runtime: Any, fake_method: FakeMethod, seconds: float) -> Outage:
    """Storage goes down at the training's step 2 and comes back `seconds` later."""
    outage = Outage(runtime.storage)

    def at_step(step: int) -> None:
        if step == 2:
            outage.down = True
            threading.Timer(seconds, lambda: setattr(outage, "down", False)).start()

    fake_method.on_step = at_step
    return outage


def test_a_storage_outage_during_a_training_costs_no_attempt(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(runtime.settings, "checkpoint_every_steps", 1)  # a state saved at every step: during it
    training = new_training(client, user, steps=4)
    outage = _outage_during(runtime, fake_method, 1.2)
    settings = runtime.settings.model_copy(update={"storage_retry_seconds": 30})
    assert run(job_runtime(dataclasses.replace(runtime, storage=outage, settings=settings)), training["id"]) == (
        "succeeded"
    )
    assert outage.calls_down >= 1  # the outage was met, and waited out
    with runtime.sessions() as session:
        job = session.get(Job, training["id"])
        assert job is not None and job.status == "succeeded" and job.attempts == 1


def test_without_the_wait_the_attempt_is_lost(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """What a storage budget of 0 (and the code before) does: the attempt ends, the job is left running for the
    reconciler to take over once its heartbeat is stale."""
    monkeypatch.setattr(runtime.settings, "checkpoint_every_steps", 1)
    training = new_training(client, user, steps=4)
    outage = _outage_during(runtime, fake_method, 1.2)
    settings = runtime.settings.model_copy(update={"storage_retry_seconds": 0})
    with pytest.raises(StorageUnavailable):
        run(job_runtime(dataclasses.replace(runtime, storage=outage, settings=settings)), training["id"])
    with runtime.sessions() as session:
        job = session.get(Job, training["id"])
        assert job is not None and job.status == "running" and job.attempts == 1
