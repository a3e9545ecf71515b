"""The Python SDK (clients/python) against the real API in-process: the repo's fixtures (PostgreSQL built by the
migrations, Redis, moto S3), the SDK given the fixtures' httpx client (sync) or an ASGI transport (async)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from svdiff_client import (
    AsyncClient,
    Client,
    Forbidden,
    NotFound,
    Photo,
    Subject,
    SubjectWithTraining,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
)

from tests.conftest import ADMIN_KEY, make_user
from tests.images import PHOTOS, dog


def key_of(user: dict[str, str]) -> str:
    return user["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def account(client: httpx.Client) -> dict[str, str]:
    return make_user(client)


@pytest.fixture
def sdk(client: httpx.Client, account: dict[str, str]) -> Iterator[Client]:
    with Client(key_of(account), http_client=client, max_retries=0) as sdk:
        yield sdk


def three_photos() -> list[Any]:
    """The three bundled dog photos, as a path, as bytes and as a PIL image."""
    with Image.open(PHOTOS / "02.jpg") as image:
        image.load()
        return [PHOTOS / "00.jpg", dog(1), image]


def test_subject_from_three_photos_listed_and_fetched(sdk: Client) -> None:
    subject = sdk.subjects.create_with_photos("Rex", "dog", three_photos())
    assert isinstance(subject, Subject) and subject.photo_count == 3 and subject.class_word == "dog"
    page = sdk.subjects.list()
    assert [s.id for s in page.data] == [subject.id] and page.next_cursor is None
    assert sdk.subjects.get(subject.id) == subject
    photos = sdk.subjects.list_photos(subject).data
    assert len(photos) == 3 and all(isinstance(p, Photo) and p.width >= 256 for p in photos)
    assert len({p.sha256 for p in photos}) == 3


def test_pagination_and_photo_upload(sdk: Client) -> None:
    ids = [sdk.subjects.create(f"s{i}", "dog").id for i in range(3)]
    first = sdk.subjects.list(limit=2)
    assert len(first.data) == 2 and first.next_cursor
    assert sorted(s.id for s in sdk.subjects.iter(limit=2)) == sorted(ids)
    added = sdk.subjects.upload_photos(ids[0], [PHOTOS / "01.jpg"])
    assert len(added) == 1 and sdk.subjects.get(ids[0]).photo_count == 1
    sdk.subjects.delete_photo(ids[0], added[0])
    sdk.subjects.delete(ids[1])
    with pytest.raises(NotFound):
        sdk.subjects.get(ids[1])


def test_not_found_is_a_typed_problem(sdk: Client, client: httpx.Client) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound) as caught:
        sdk.subjects.get(missing)
    error = caught.value
    assert error.status == 404 and error.instance == f"/v1/subjects/{missing}" and error.type.startswith("https://")
    theirs = sdk.subjects.create("Rex", "dog")
    with Client(key_of(make_user(client)), http_client=client) as other, pytest.raises(NotFound):
        other.subjects.get(theirs.id)  # another user's subject does not exist for them


def test_validation_problem_names_the_fields(sdk: Client) -> None:
    with pytest.raises(ValidationError) as caught:
        sdk.subjects.create("", "Dog!")
    error = caught.value
    assert error.status == 422 and {e.field for e in error.errors} == {"name", "class_word"}
    with pytest.raises(ValidationError) as bad_training:
        sdk.trainings.create([], steps=0)
    assert {e.field for e in bad_training.value.errors} == {"subject_ids", "steps"}


def test_a_bad_photo_is_refused_and_nothing_stored(sdk: Client) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        sdk.subjects.create_with_photos("Rex", "dog", [dog(0), b"not an image"])
    assert [e.field for e in caught.value.errors] == ["files[1]"]
    assert sdk.subjects.list().data == []


def test_bad_key_and_admin_only(client: httpx.Client, sdk: Client, account: dict[str, str]) -> None:
    with Client("svd_" + "x" * 40, http_client=client) as stranger, pytest.raises(Unauthorized):
        stranger.me()
    assert sdk.me().id == account["id"]
    with pytest.raises(Forbidden):
        sdk.admin.stats()


def test_admin_sees_the_subject_and_its_owner(client: httpx.Client, sdk: Client, account: dict[str, str]) -> None:
    subject = sdk.subjects.create_with_photos("Rex", "dog", three_photos())
    with Client(ADMIN_KEY, http_client=client) as admin:
        listed = admin.admin.subjects(user_id=account["id"]).data
        assert [(s.id, s.owner.id, s.photo_count, s.checkpoint_count) for s in listed] == [
            (subject.id, account["id"], 3, 0)
        ]
        assert admin.admin.stats().storage_bytes["photos"] > 0
        created = admin.users.create("sdk-user")
    with Client(created.api_key, http_client=client) as fresh:
        assert fresh.me().name == "sdk-user"


def test_keys_create_use_and_revoke(client: httpx.Client, sdk: Client) -> None:
    created = sdk.keys.create()
    with Client(created.api_key, http_client=client) as second:
        assert second.me().id == sdk.me().id
        assert {k.id for k in sdk.keys.list()} >= {created.id}
        sdk.keys.revoke(created)
        with pytest.raises(Unauthorized):
            second.me()


def test_training_started_by_the_shortcut_canceled_and_waited(sdk: Client) -> None:
    """No worker runs here: the training stays queued until canceled; wait() then returns the canceled job
    (through the events stream where the service has it, by polling where it does not)."""
    key = f"sdk-{uuid.uuid4()}"
    started = sdk.subjects.create_with_photos("Rex", "dog", three_photos(), train=True, idempotency_key=key)
    assert isinstance(started, SubjectWithTraining) and started.training.status == "queued"
    replay = sdk.subjects.create_with_photos("Rex", "dog", three_photos(), train=True, idempotency_key=key)
    assert isinstance(replay, SubjectWithTraining) and replay.training.id == started.training.id
    canceled = sdk.trainings.cancel(started.training)
    assert canceled.status == "canceled"
    assert sdk.trainings.wait(started.training.id, timeout=20).status == "canceled"
    assert [t.id for t in sdk.trainings.iter()] == [started.training.id]


def test_generation_idempotency_key_replays(sdk: Client) -> None:
    first = sdk.generations.create("a photo of a dog", num_images=1, seed=1, idempotency_key="sdk-gen-1")
    again = sdk.generations.create("a photo of a dog", num_images=1, seed=1, idempotency_key="sdk-gen-1")
    assert again.id == first.id and first.status == "queued"
    assert sdk.generations.cancel(first).status == "canceled"
    assert sdk.generations.wait(first, timeout=20).status == "canceled"


def test_async_client_over_asgi(app: Any, client: httpx.Client, account: dict[str, str]) -> None:
    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient(key_of(account), "http://testserver", transport=transport) as sdk:
            subject = await sdk.subjects.create_with_photos("Rex", "dog", three_photos())
            assert subject.photo_count == 3
            assert (await sdk.subjects.get(subject.id)).id == subject.id
            assert [s.id async for s in sdk.subjects.iter()] == [subject.id]
            with pytest.raises(NotFound):
                await sdk.subjects.get(str(uuid.uuid4()))
            with pytest.raises(ValidationError):
                await sdk.subjects.create("Rex", "Dog!")

    asyncio.run(run())


def test_wait_follows_the_services_event_stream(
    client: httpx.Client, sdk: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wait() on the service's own events route: a queued generation, canceled from another thread while the
    waiter listens; the waiter gets the canceled job from the stream, never refused, never broken, never polled."""
    from svdiff_client import _wait

    detours: list[str] = []
    for name in ("refused", "broke", "next_poll_delay"):
        original = getattr(_wait.WaitState, name)

        def record(self: Any, *args: Any, _name: str = name, _original: Any = original) -> Any:
            detours.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(_wait.WaitState, name, record)
    generation = sdk.generations.create("a photo of a dog", seed=2)
    outcome: dict[str, Any] = {}

    def waiter() -> None:
        try:
            outcome["job"] = sdk.generations.wait(generation, timeout=30)
        except Exception as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)  # the waiter is listening (the in-process transport answers once the stream has ended)
    assert thread.is_alive()
    assert sdk.generations.cancel(generation).status == "canceled"
    thread.join(timeout=40)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["job"].status == "canceled" and outcome["job"].id == generation.id
    assert detours == []
