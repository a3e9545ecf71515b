from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from core import keys
from core.db import session_scope
from models import Job, utcnow
from tests.api.helpers import subject_with_photos, train
from tests.conftest import auth
from tests.worker.fake_method import FakeMethod
from worker.tasks.training import checkpoint_id_for, train_job


def run(runtime: Any, training_id: str, worker: str = "w1") -> str:
    return train_job(runtime, training_id, worker)


def leftovers(runtime: Any, training: dict[str, Any]) -> list[str]:
    checkpoint = keys.checkpoint_shifts(training["user_id"], checkpoint_id_for(training["id"]))
    return [key for key in (keys.training_state(training["id"]), checkpoint) if runtime.storage.exists(key)]


def new_training(client: httpx.Client, user: dict[str, str], steps: int = 5) -> dict[str, Any]:
    subject = subject_with_photos(client, user, count=2)
    response = train(client, user, [subject["id"]], steps=steps)
    assert response.status_code == 202
    return dict(response.json())


def test_training_succeeds_and_stores_its_checkpoint(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    training = new_training(client, user)
    assert run(runtime, training["id"]) == "succeeded"
    done = client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()
    assert done["status"] == "succeeded" and done["progress"] == {"step": 5, "total": 5}
    assert done["started_at"] and done["finished_at"] and done["queue_position"] is None
    checkpoint = client.get(f"/v1/checkpoints/{done['checkpoint_id']}", headers=auth(user)).json()
    assert httpx.get(checkpoint["download_url"]).content == b"shifts[sks:2]"
    assert checkpoint["base_model"] == "fake-base" and checkpoint["size_bytes"] == len(b"shifts[sks:2]")
    assert runtime.storage.exists(keys.prior_prefix("fake0001") + "dog/0.png")
    assert not runtime.storage.exists(keys.training_state(training["id"]))
    assert run(runtime, training["id"]) == "skipped"  # a duplicate message does nothing


def test_redelivered_training_resumes_from_saved_state(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "checkpoint_every_steps", 2)
    training = new_training(client, user, steps=6)

    def die(step: int) -> None:
        if step == 5:
            raise SystemExit("worker killed")  # not an Exception: the shell must not mark the job failed

    fake_method.on_step = die
    with pytest.raises(SystemExit):
        run(runtime, training["id"], worker="dead")
    assert runtime.storage.get(keys.training_state(training["id"])) == b"4"
    fake_method.on_step = None
    assert run(runtime, training["id"], worker="w2") == "skipped"  # the dead worker's heartbeat is still fresh
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, training["id"])
        assert job is not None and job.status == "running" and job.attempts == 1
        job.heartbeat_at = utcnow() - timedelta(hours=1)
    assert run(runtime, training["id"], worker="w2") == "succeeded"
    assert fake_method.resumed_from == 4
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, training["id"])
        assert job is not None and job.attempts == 2 and job.worker_id == "w2"


def test_cancel_of_a_running_training_stops_it(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "checkpoint_every_steps", 1)  # a resumable state is saved on the way
    training = new_training(client, user, steps=10)
    fake_method.on_step = lambda step: (
        step == 3 and client.post(f"/v1/trainings/{training['id']}/cancel", headers=auth(user))
    )  # type: ignore[func-returns-value]
    assert run(runtime, training["id"]) == "canceled"
    done = client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()
    assert done["status"] == "canceled" and done["progress"]["step"] < 10 and done["checkpoint_id"] is None
    assert leftovers(runtime, {**training, "user_id": user["id"]}) == []


def test_method_error_fails_the_job_with_its_reason(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    training = new_training(client, user)
    fake_method.error = RuntimeError("CUDA out of memory")
    assert run(runtime, training["id"]) == "failed"
    done = client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()
    assert done["status"] == "failed"
    assert done["error"] == {"type": "RuntimeError", "detail": "CUDA out of memory"}


def test_poison_job_fails_instead_of_looping(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    training = new_training(client, user)
    with session_scope(runtime.sessions) as session:
        job = session.get(Job, training["id"])
        assert job is not None
        job.attempts = runtime.settings.max_job_attempts
    assert run(runtime, training["id"]) == "skipped"
    done = client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()
    assert done["status"] == "failed" and done["error"]["type"] == "TooManyAttempts"


def test_subject_deleted_during_training(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "checkpoint_every_steps", 1)
    training = new_training(client, user, steps=6)
    subject_id = training["subject_ids"][0]
    fake_method.on_step = lambda step: step == 2 and client.delete(f"/v1/subjects/{subject_id}", headers=auth(user))  # type: ignore[func-returns-value]
    assert run(runtime, training["id"]) == "lost"
    assert client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).status_code == 404
    assert leftovers(runtime, {**training, "user_id": user["id"]}) == []  # written after the subject's clean-up


def test_subject_deleted_after_the_method_finished_leaves_no_checkpoint_blob(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod, monkeypatch: pytest.MonkeyPatch
) -> None:
    training = new_training(client, user, steps=3)
    put = runtime.storage.put

    def put_after_the_deletion(key: str, data: bytes, *args: Any) -> None:
        if key.endswith("shifts.safetensors"):  # the method is done; the subject goes just now
            client.delete(f"/v1/subjects/{training['subject_ids'][0]}", headers=auth(user))
        put(key, data, *args)

    monkeypatch.setattr(runtime.storage, "put", put_after_the_deletion)
    assert run(runtime, training["id"]) == "lost"
    assert leftovers(runtime, {**training, "user_id": user["id"]}) == []


def test_canceled_while_queued_is_never_run(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod
) -> None:
    training = new_training(client, user)
    client.post(f"/v1/trainings/{training['id']}/cancel", headers=auth(user))
    assert run(runtime, training["id"]) == "skipped"
    assert fake_method.resumed_from is None


class FlakySessions:
    """The runtime's sessionmaker, except that while `down` every new session fails as a restarting database
    makes it fail."""

    def __init__(self, sessions: Any) -> None:
        self.sessions, self.down, self.refused = sessions, False, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            from sqlalchemy.exc import OperationalError

            self.refused += 1
            raise OperationalError("SELECT 1", {}, Exception("the database system is starting up"))
        return self.sessions(*args, **kwargs)


def test_a_training_outlives_a_database_restart_without_losing_its_attempt(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import dataclasses
    import threading

    from worker import lifecycle

    training = new_training(client, user, steps=6)
    flaky = FlakySessions(runtime.sessions)
    restarting = dataclasses.replace(runtime, sessions=flaky)
    monkeypatch.setattr(lifecycle, "BACKOFF_FIRST_S", 0.05)

    def on_step(step: int) -> None:  # the database goes down at step 3 for 0.6 s
        if step == 3:
            flaky.down = True
            threading.Timer(0.6, lambda: setattr(flaky, "down", False)).start()

    fake_method.on_step = on_step
    assert run(restarting, training["id"]) == "succeeded"
    assert flaky.refused > 0
    done = client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()
    assert done["status"] == "succeeded" and done["progress"]["step"] == 6
    with session_scope(runtime.sessions) as session:
        assert session.get(Job, training["id"]).attempts == 1  # the same attempt went on


def test_a_database_down_past_the_retry_budget_leaves_the_job_to_the_reconciler(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod,
) -> None:  # fmt: skip
    import dataclasses

    from sqlalchemy.exc import OperationalError

    training = new_training(client, user, steps=4)
    flaky = FlakySessions(runtime.sessions)
    settings = runtime.settings.model_copy(update={"db_retry_seconds": 0.3})
    restarting = dataclasses.replace(runtime, sessions=flaky, settings=settings)
    fake_method.on_step = lambda step: setattr(flaky, "down", step == 2 or flaky.down)
    with pytest.raises(OperationalError):
        run(restarting, training["id"])
    assert client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()["status"] == "running"


def test_a_wedged_step_stops_the_heartbeat(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod,
) -> None:  # fmt: skip
    """The heartbeat thread kept beating while work() was stuck, so a hung job stayed running forever: liveness is
    now progress, and a step that takes longer than its bound lets the heartbeat go stale."""
    import dataclasses
    import time

    training = new_training(client, user, steps=3)
    settings = runtime.settings.model_copy(update={"heartbeat_timeout_seconds": 5, "step_timeout_seconds": 0.5})
    quick = dataclasses.replace(runtime, settings=settings)
    beats: list[Any] = []

    def wedge(step: int) -> None:
        if step == 2:  # stuck for longer than 2 beats (every 1.25 s) and the step bound
            with session_scope(runtime.sessions) as session:
                beats.append(session.get(Job, training["id"]).heartbeat_at)
            time.sleep(3.5)
            with session_scope(runtime.sessions) as session:
                beats.append(session.get(Job, training["id"]).heartbeat_at)

    fake_method.on_step = wedge
    assert run(quick, training["id"]) == "succeeded"
    assert beats[0] == beats[1]  # no beat while the step hung


def test_celery_time_limits_per_task_kind() -> None:
    from core.celery_app import EDIT, GENERATE, TRAIN, make_celery
    from core.settings import Settings

    app = make_celery(Settings(_env_file=None, training_time_limit_seconds=7200))  # type: ignore[call-arg]
    app.loader.import_default_modules()
    assert (app.tasks[TRAIN].soft_time_limit, app.tasks[TRAIN].time_limit) == (7200, 7260)
    assert app.tasks[GENERATE].soft_time_limit == app.tasks[EDIT].soft_time_limit == 1800
