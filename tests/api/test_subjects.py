from __future__ import annotations

from typing import Any

import httpx
import pytest

from core import keys
from core.errors import Conflict
from tests.api.helpers import subject_with_photos
from tests.conftest import auth
from tests.images import dog


def create(client: httpx.Client, user: dict[str, str], **fields: object) -> httpx.Response:
    body = {"name": "Rex", "class_word": "dog", **fields}
    return client.post("/v1/subjects", json=body, headers=auth(user))


def test_create_get_list_delete(client: httpx.Client, user: dict[str, str]) -> None:
    created = create(client, user)
    assert created.status_code == 201
    subject = created.json()
    assert subject["photo_count"] == 0 and subject["token"] == "sks" and subject["class_word"] == "dog"
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json() == subject
    listed = client.get("/v1/subjects", headers=auth(user)).json()
    assert listed == {"data": [subject], "next_cursor": None}
    assert client.delete(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 204
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 404


def test_default_tokens_are_unique_per_user(client: httpx.Client, user: dict[str, str]) -> None:
    tokens = [create(client, user, name=f"s{i}").json()["token"] for i in range(3)]
    assert len(set(tokens)) == 3
    assert create(client, user, token=tokens[0]).status_code == 409
    assert create(client, user, token="mydog").json()["token"] == "mydog"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"class_word": "Dog!"}, "class_word"),
        ({"token": "Two Words"}, "token"),
        ({"token": "x"}, "token"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_fields_are_422(client: httpx.Client, user: dict[str, str], fields: dict, field: str) -> None:
    response = create(client, user, **fields)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_malformed_json_and_wrong_content_type(client: httpx.Client, user: dict[str, str]) -> None:
    bad_json = client.post("/v1/subjects", content=b"{nope", headers={**auth(user), "content-type": "application/json"})
    assert bad_json.status_code == 422
    text = client.post("/v1/subjects", content=b"hi", headers={**auth(user), "content-type": "text/plain"})
    assert text.status_code == 415


def test_another_users_subject_is_404(client: httpx.Client, user: dict[str, str], other_user: dict[str, str]) -> None:
    subject = create(client, user).json()
    for call in (client.get, client.delete):
        assert call(f"/v1/subjects/{subject['id']}", headers=auth(other_user)).status_code == 404
    assert client.get(f"/v1/subjects/{subject['id']}/photos", headers=auth(other_user)).status_code == 404
    files = [("files", ("a.jpg", dog(0), "image/jpeg"))]
    upload = client.post(f"/v1/subjects/{subject['id']}/photos", files=files, headers=auth(other_user))
    assert upload.status_code == 404
    assert client.get("/v1/subjects", headers=auth(other_user)).json()["data"] == []
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 200


def test_no_key_is_401(client: httpx.Client) -> None:
    assert client.get("/v1/subjects").status_code == 401
    assert client.post("/v1/subjects", json={"name": "a", "class_word": "dog"}).status_code == 401


def test_multipart_create_with_photos(client: httpx.Client, user: dict[str, str]) -> None:
    files = [("files", (f"{i}.jpg", dog(i), "image/jpeg")) for i in range(3)]
    response = client.post("/v1/subjects", data={"name": "Rex", "class_word": "dog"}, files=files, headers=auth(user))
    assert response.status_code == 201, response.text
    assert response.json()["photo_count"] == 3


def test_multipart_create_and_train(client: httpx.Client, user: dict[str, str]) -> None:
    files = [("files", (f"{i}.jpg", dog(i), "image/jpeg")) for i in range(3)]
    data = {"name": "Rex", "class_word": "dog", "train": "true"}
    headers = {**auth(user), "Idempotency-Key": "subject-train-1"}
    response = client.post("/v1/subjects", data=data, files=files, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["subject"]["photo_count"] == 3
    training = body["training"]
    assert training["status"] == "queued" and training["subject_ids"] == [body["subject"]["id"]]
    assert training["params"]["cut_mix_unmix"] is False
    replay = client.post("/v1/subjects", data=data, files=files, headers=headers)
    assert replay.status_code == 201 and replay.json()["subject"]["id"] == body["subject"]["id"]
    assert len(client.get("/v1/subjects", headers=auth(user)).json()["data"]) == 1


def test_multipart_create_with_a_bad_photo_stores_nothing(client: httpx.Client, user: dict[str, str]) -> None:
    files = [("files", ("ok.jpg", dog(0), "image/jpeg")), ("files", ("bad.jpg", b"not an image", "image/jpeg"))]
    response = client.post("/v1/subjects", data={"name": "Rex", "class_word": "dog"}, files=files, headers=auth(user))
    assert response.status_code == 415
    assert response.json()["errors"] == [{"field": "files[1]", "detail": "bad.jpg: not a JPEG, PNG or WebP image"}]
    assert client.get("/v1/subjects", headers=auth(user)).json()["data"] == []


def stored_blobs(runtime: Any, user: dict[str, str]) -> list[str]:
    listing = runtime.storage.client.list_objects_v2(Bucket=runtime.storage.bucket, Prefix=keys.user_prefix(user["id"]))
    return [item["Key"] for item in listing.get("Contents", [])]


def test_multipart_create_and_train_with_a_refused_webhook_stores_nothing(
    client: httpx.Client, user: dict[str, str], runtime: Any
) -> None:
    files = [("files", (f"{i}.jpg", dog(i), "image/jpeg")) for i in range(2)]
    data = {"name": "Rex", "class_word": "dog", "train": "true", "webhook_url": "http://127.0.0.1:9/hook"}
    response = client.post("/v1/subjects", data=data, files=files, headers=auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "webhook_url"
    assert client.get("/v1/subjects", headers=auth(user)).json()["data"] == []
    assert stored_blobs(runtime, user) == []


def test_photos_stored_by_a_request_that_fails_later_are_removed(
    client: httpx.Client, user: dict[str, str], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.services import jobs

    def refused(*_: Any) -> Any:
        raise Conflict("refused after the photos were stored")

    monkeypatch.setattr(jobs, "create_training", refused)
    files = [("files", (f"{i}.jpg", dog(i), "image/jpeg")) for i in range(2)]
    data = {"name": "Rex", "class_word": "dog", "train": "true"}
    response = client.post("/v1/subjects", data=data, files=files, headers=auth(user))
    assert response.status_code == 409, response.text
    assert client.get("/v1/subjects", headers=auth(user)).json()["data"] == []
    assert stored_blobs(runtime, user) == []


def test_when_every_default_token_is_used_the_409_names_the_limit(
    client: httpx.Client, user: dict[str, str], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "subject_tokens", ("sks", "zwx"))
    assert [create(client, user, name=f"s{i}").json()["token"] for i in range(2)] == ["sks", "zwx"]
    refused = create(client, user, name="third")
    assert refused.status_code == 409
    assert "All 2 default tokens" in refused.json()["detail"] and "pass a `token`" in refused.json()["detail"]
    assert create(client, user, name="third", token="mydog").status_code == 201
    body = client.get("/openapi.json").json()["paths"]["/v1/subjects"]["post"]["requestBody"]["content"]
    for media in ("application/json", "multipart/form-data"):  # the token's description states the limit
        assert "409" in body[media]["schema"]["properties"]["token"]["description"]


def test_a_deletion_while_storage_is_down_is_finished_by_the_reconciler(
    client: httpx.Client, user: dict[str, str], runtime: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The API answered 204 and the blobs stayed forever when storage (and the broker) were down: the deletion
    is now in the outbox with the rows' deletion, and the reconciler finishes it."""
    from sqlalchemy import select, update

    from core.db import session_scope
    from core.errors import StorageUnavailable
    from models import BlobDeletion
    from worker.reconciler import reconcile

    subject = subject_with_photos(client, user, count=2)
    prefix = keys.subject_prefix(user["id"], subject["id"])
    stored = runtime.storage.client.list_objects_v2(Bucket=runtime.storage.bucket, Prefix=prefix).get("KeyCount")
    assert stored == 2

    def down(prefix: str) -> int:
        raise StorageUnavailable("storage unreachable: EndpointConnectionError")

    monkeypatch.setattr(runtime.storage, "delete_prefix", down)
    assert client.delete(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 204
    with session_scope(runtime.sessions) as session:
        (row,) = session.scalars(select(BlobDeletion).where(BlobDeletion.prefix == prefix)).all()
        assert row.attempts == 1 and "EndpointConnectionError" in (row.last_error or "")
    monkeypatch.undo()  # storage is back
    assert runtime.storage.client.list_objects_v2(Bucket=runtime.storage.bucket, Prefix=prefix).get("KeyCount") == 2
    with session_scope(runtime.sessions) as session:  # its backoff has passed
        session.execute(update(BlobDeletion).where(BlobDeletion.prefix == prefix).values(next_attempt_at=None))
    assert reconcile(runtime)["blobs_deleted"] >= 1
    assert runtime.storage.client.list_objects_v2(Bucket=runtime.storage.bucket, Prefix=prefix).get("KeyCount") == 0
    with session_scope(runtime.sessions) as session:
        assert not session.scalars(select(BlobDeletion).where(BlobDeletion.prefix == prefix)).all()


def test_a_deletion_racing_a_trainings_final_commit_takes_its_checkpoint_blob_too(
    client: httpx.Client, user: dict[str, str], runtime: Any,
) -> None:  # fmt: skip
    """The training's results transaction holds its row while it stores the checkpoint; a subject deletion arriving
    then waits for it and deletes that checkpoint's blob, instead of missing a checkpoint it read too early."""
    import hashlib
    import threading

    from core.db import session_scope
    from models import Checkpoint, Job
    from tests.api.helpers import train

    subject = subject_with_photos(client, user)
    training = train(client, user, [subject["id"]]).json()
    locked, release, stored = threading.Event(), threading.Event(), {}

    def finish_training() -> None:
        with session_scope(runtime.sessions) as session:
            session.get(Job, training["id"], with_for_update=True)
            checkpoint = Checkpoint(user_id=user["id"], training_id=training["id"], base_model="tiny", size_bytes=1,
                                    sha256=hashlib.sha256(b"x").hexdigest(), storage_key="")  # fmt: skip
            session.add(checkpoint)
            session.flush()
            checkpoint.storage_key = keys.checkpoint_shifts(user["id"], checkpoint.id)
            runtime.storage.put(checkpoint.storage_key, b"x")
            stored["key"] = checkpoint.storage_key
            locked.set()
            release.wait(10)

    worker = threading.Thread(target=finish_training)
    worker.start()
    assert locked.wait(10)
    threading.Timer(0.5, release.set).start()
    assert client.delete(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 204
    worker.join()
    assert not runtime.storage.exists(stored["key"])
