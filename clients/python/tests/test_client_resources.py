"""What each method sends and how it reads the answer."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from mockapi import BASE, MockApi, job_json, json_response, problem
from svdiff_client import AdminSubject, Client, Photo, Subject, SubjectWithTraining, Training, WaitTimeout

NOW = "2025-01-01T00:00:00Z"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def subject(subject_id: str = "s-1", photo_count: int = 0) -> dict[str, Any]:
    return {"id": subject_id, "name": "Rex", "class_word": "dog", "token": "sks", "photo_count": photo_count,
            "created_at": NOW}  # fmt: skip


def photo(photo_id: str = "p-1") -> dict[str, Any]:
    return {"id": photo_id, "width": 512, "height": 512, "sha256": "0" * 64, "url": f"{BASE}/v1/files/t",
            "created_at": NOW}  # fmt: skip


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def parts(request: httpx.Request) -> list[tuple[str, str | None, str | None, bytes]]:
    """(field name, filename, content type, content) of each part of a multipart body."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    out = []
    for chunk in request.content.split(b"--" + boundary)[1:-1]:
        head, _, content = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = {}
        for item in head.decode().split("\r\n")[0].split(";")[1:]:
            key, _, value = item.strip().partition("=")
            disposition[key] = value.strip('"')
        ctype = next((h.split(": ", 1)[1] for h in head.decode().split("\r\n") if h.lower().startswith("content-type")),
                     None)  # fmt: skip
        out.append((disposition["name"], disposition.get("filename"), ctype, content))
    return out


def test_subjects_json_create_get_delete(api: MockApi) -> None:
    api.on("POST", "/v1/subjects", json_response(subject(), 201))
    api.on("GET", "/v1/subjects/s-1", json_response(subject()))
    api.on("DELETE", "/v1/subjects/s-1", httpx.Response(204))
    with api.client() as client:
        created = client.subjects.create("Rex", "dog")
        assert isinstance(created, Subject) and created.token == "sks"
        assert client.subjects.get(created) == created  # a model is taken for its id
        assert client.subjects.delete("s-1") is None
        client.subjects.create("Rex", "dog", token="zwx")
    assert body(api.requests[0]) == {"name": "Rex", "class_word": "dog"}
    assert body(api.requests[3]) == {"name": "Rex", "class_word": "dog", "token": "zwx"}
    assert "idempotency-key" not in api.requests[0].headers
    assert api.requests[0].headers["user-agent"].startswith("svdiff-client/")


def test_create_with_photos_is_one_multipart_request(api: MockApi, tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    path = tmp_path / "rex.jpg"
    path.write_bytes(JPEG)
    image = Image.new("RGB", (300, 260), (200, 30, 90))
    api.on("POST", "/v1/subjects", json_response(subject(photo_count=3), 201))
    with api.client() as client:
        created = client.subjects.create_with_photos("Rex", "dog", [path, PNG, image])
    assert isinstance(created, Subject) and created.photo_count == 3
    request = api.requests[0]
    assert "idempotency-key" not in request.headers
    sent = parts(request)
    assert [(p[0], p[3]) for p in sent if p[1] is None] == [("name", b"Rex"), ("class_word", b"dog")]
    files = [p for p in sent if p[1] is not None]
    assert [(f[0], f[1], f[2]) for f in files] == [("files", "rex.jpg", "image/jpeg"), ("files", "photo-1.png",
                                                   "image/png"), ("files", "photo-2.png", "image/png")]  # fmt: skip
    assert files[0][3] == JPEG and files[1][3] == PNG
    assert Image.open(io.BytesIO(files[2][3])).size == (300, 260)


def test_create_with_photos_and_train_returns_both(api: MockApi) -> None:
    pair = {"subject": subject(photo_count=1), "training": job_json()}
    api.on("POST", "/v1/subjects", json_response(pair, 201))
    with api.client() as client:
        created = client.subjects.create_with_photos("Rex", "dog", [JPEG], train=True, webhook_url="https://h/x")
    assert isinstance(created, SubjectWithTraining) and created.training.status == "queued"
    request = api.requests[0]
    assert request.headers["Idempotency-Key"]
    fields = {p[0]: p[3] for p in parts(request) if p[1] is None}
    assert fields == {"name": b"Rex", "class_word": b"dog", "webhook_url": b"https://h/x", "train": b"true"}


def test_upload_photos_from_paths_bytes_files_and_urls(api: MockApi, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    api.on("POST", "/v1/subjects/s-1/photos", json_response({"data": [photo("p-1"), photo("p-2")]}, 201))
    with api.client() as client:
        photos = client.subjects.upload_photos("s-1", [str(path), io.BytesIO(JPEG)])
        single = client.subjects.upload_photos("s-1", JPEG)  # one photo needs no list
        fetched = client.subjects.photos_from_urls("s-1", ["https://img.example/1.jpg", "https://img.example/2.jpg"])
    assert all(isinstance(p, Photo) for p in photos) and [p.id for p in fetched] == ["p-1", "p-2"]
    first = parts(api.requests[0])
    assert [(p[0], p[1], p[2]) for p in first] == [("files", "a.png", "image/png"), ("files", "photo-1.jpg",
                                                   "image/jpeg")]  # fmt: skip
    assert len(parts(api.requests[1])) == 1 and single
    assert api.requests[2].headers["content-type"] == "application/json"
    assert body(api.requests[2]) == {"urls": ["https://img.example/1.jpg", "https://img.example/2.jpg"]}


def test_a_photo_of_the_wrong_type_is_refused_before_sending(api: MockApi) -> None:
    with api.client() as client, pytest.raises(TypeError, match="a photo is"):
        client.subjects.upload_photos("s-1", [123])  # type: ignore[list-item]
    assert api.requests == []


def test_pagination_follows_cursors(api: MockApi) -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") == "c2":
            return json_response({"data": [subject("s-3")], "next_cursor": None})
        return json_response({"data": [subject("s-1"), subject("s-2")], "next_cursor": "c2"})

    api.on("GET", "/v1/subjects", pages)
    with api.client() as client:
        page = client.subjects.list(limit=2)
        assert [s.id for s in page.data] == ["s-1", "s-2"] and page.next_cursor == "c2"
        assert [s.id for s in client.subjects.iter(limit=2)] == ["s-1", "s-2", "s-3"]
    assert [dict(r.url.params) for r in api.requests] == [
        {"limit": "2"},
        {"limit": "2"},
        {"limit": "2", "cursor": "c2"},
    ]


def test_training_options_left_out_are_not_sent(api: MockApi) -> None:
    api.on("POST", "/v1/trainings", json_response(job_json(), 202))
    api.on("POST", "/v1/trainings/job-1/cancel", json_response(job_json(status="canceled"), 202))
    api.on("GET", "/v1/trainings", json_response({"data": [job_json()], "next_cursor": None}))
    with api.client() as client:
        client.trainings.create(["s-1", "s-2"], steps=400, learning_rate=9e-3, cut_mix_unmix=False)
        assert client.trainings.cancel("job-1").status == "canceled"
        assert client.trainings.list().data[0].subject_ids == ["s-1"]
    assert body(api.requests[0]) == {"subject_ids": ["s-1", "s-2"], "steps": 400, "learning_rate": 9e-3,
                                     "cut_mix_unmix": False}  # fmt: skip


def test_generation_body_checkpoints_and_new_options(api: MockApi) -> None:
    api.on("POST", "/v1/generations", json_response(job_json("generation"), 202))
    with api.client() as client:
        client.generations.create("a photo of sks dog", ["c-1", ("c-2", 0.5)], num_images=2, seed=0)
        client.generations.create("x", scheduler="dpm++", output_format="webp", quality=80, aspect_ratio="16:9")
    assert body(api.requests[0]) == {"prompt": "a photo of sks dog", "checkpoints": [{"id": "c-1"},
                                     {"id": "c-2", "scale": 0.5}], "num_images": 2, "seed": 0}  # fmt: skip
    assert body(api.requests[1]) == {"prompt": "x", "checkpoints": [], "scheduler": "dpm++", "output_format": "webp",
                                     "quality": 80, "aspect_ratio": "16:9"}  # fmt: skip


def test_image_downloads_never_carry_the_key_to_another_host(api: MockApi) -> None:
    images = [{"url": "https://storage.example.test/b/img0.png?X-Amz-Signature=s", "seed": 1, "width": 64,
               "height": 64}, {"url": f"{BASE}/v1/files/tok", "seed": 2, "width": 64, "height": 64}]  # fmt: skip
    api.on("GET", "/v1/generations/g-1", json_response(job_json("generation", "succeeded", "g-1", images=images)))
    api.on("GET", "/b/img0.png", httpx.Response(200, content=b"png-0"))
    api.on("GET", "/v1/files/tok", httpx.Response(200, content=b"png-1"))
    with api.client() as client:
        assert client.generations.download_images("g-1") == [b"png-0", b"png-1"]
    storage, own = api.requests[1], api.requests[2]
    assert storage.url.host == "storage.example.test" and "authorization" not in storage.headers
    assert own.headers["authorization"] == "Bearer svd_test_key"


def test_lora_download_waits_for_the_export(api: MockApi) -> None:
    exporting = json_response({"status": "exporting", "retry_after": 5}, 202, headers={"Retry-After": "4"})
    api.on("GET", "/v1/checkpoints/c-1/file", exporting, exporting, httpx.Response(200, content=b"lora-bytes"))
    sleeps: list[float] = []
    with api.client(sleeps) as client:
        assert client.checkpoints.download("c-1", format="lora", rank=8) == b"lora-bytes"
    assert sleeps == [4.0, 4.0]
    assert dict(api.requests[0].url.params) == {"format": "lora", "rank": "8"}


def test_lora_download_gives_up_at_its_timeout(api: MockApi) -> None:
    api.on("GET", "/v1/checkpoints/c-1/file", json_response({"status": "exporting"}, 202, headers={"Retry-After": "0"}))
    with api.client() as client, pytest.raises(WaitTimeout, match="lora export"):
        client.checkpoints.download("c-1", format="lora", timeout=0.05)
    assert len(api.requests) >= 1


def test_svdiff_download_and_checkpoint(api: MockApi) -> None:
    checkpoint = {"id": "c-1", "training_id": "t-1", "subject_ids": ["s-1"], "base_model": "tiny", "size_bytes": 6,
                  "sha256": "0" * 64, "format_version": 1, "created_at": NOW, "download_url": f"{BASE}/v1/files/x",
                  "download_expires_at": NOW}  # fmt: skip
    api.on("GET", "/v1/checkpoints/c-1", json_response(checkpoint))
    api.on("GET", "/v1/checkpoints/c-1/file", httpx.Response(200, content=b"shifts"))
    with api.client() as client:
        got = client.checkpoints.get("c-1")
        assert client.checkpoints.download(got) == b"shifts"
    assert dict(api.requests[1].url.params) == {"format": "svdiff"}


def test_admin_keys_and_users(api: MockApi) -> None:
    admin_subject = {**subject(), "owner": {"id": "u-1", "name": "ann"}, "checkpoint_count": 1,
                     "checkpoint_bytes": 10, "last_trained_at": None}  # fmt: skip
    key = {"id": "k-1", "prefix": "svd_ab", "created_at": NOW, "last_used_at": None, "revoked_at": None}
    api.on("GET", "/v1/admin/subjects", json_response({"data": [admin_subject], "next_cursor": None}))
    api.on("GET", "/v1/admin/jobs", json_response({"data": [{**job_json(), "user_id": "u-1", "attempts": 1,
                                                   "worker_id": None}], "next_cursor": None}))  # fmt: skip
    api.on("GET", "/v1/admin/stats", json_response({"jobs": {"training": {"queued": 1}}, "storage_bytes": {"total": 5},
                                                    "workers": [{"worker_id": "w", "last_seen_at": NOW}]}))  # fmt: skip
    api.on("GET", "/v1/users/me/keys", json_response({"data": [key]}))
    api.on("POST", "/v1/users/u-2/keys", json_response({**key, "api_key": "svd_new"}, 201))
    api.on("DELETE", "/v1/users/me/keys/k-1", httpx.Response(204))
    api.on("POST", "/v1/users", json_response({"id": "u-3", "name": "bo", "role": "user", "created_at": NOW,
                                               "api_key": "svd_x", "webhook_secret": "whsec_x"}, 201))  # fmt: skip
    with api.client() as client:
        listed = client.admin.subjects(user_id="u-1").data
        assert isinstance(listed[0], AdminSubject) and listed[0].owner.name == "ann"
        assert client.admin.jobs(status="queued", kind="training").data[0].attempts == 1
        assert client.admin.stats().workers[0].worker_id == "w"
        assert client.keys.list()[0].prefix == "svd_ab"
        assert client.keys.create(user="u-2").api_key == "svd_new"
        client.keys.revoke("k-1")
        assert client.users.create("bo").webhook_secret == "whsec_x"
    assert dict(api.requests[0].url.params) == {"user_id": "u-1"}
    assert dict(api.requests[1].url.params) == {"status": "queued", "kind": "training"}


def test_key_and_url_from_the_environment(monkeypatch: pytest.MonkeyPatch, api: MockApi) -> None:
    monkeypatch.setenv("SVDIFF_API_KEY", "svd_env")
    monkeypatch.setenv("SVDIFF_BASE_URL", "https://env.example.test/")
    api.on("GET", "/v1/me", problem(401))
    with Client(transport=httpx.MockTransport(api.handler)) as client:
        assert client.base_url == "https://env.example.test"
        with pytest.raises(Exception, match="401"):
            client.me()
    assert api.requests[0].headers["authorization"] == "Bearer svd_env"
    assert str(api.requests[0].url) == "https://env.example.test/v1/me"


def test_an_injected_http_client_is_used_and_left_open(api: MockApi) -> None:
    api.on("GET", "/v1/me", json_response({"id": "u", "name": "n", "role": "user", "created_at": NOW}))
    http = httpx.Client(base_url="http://injected.test", transport=httpx.MockTransport(api.handler))
    with Client("svd_k", http_client=http) as client:
        assert client.me().id == "u"
    assert not http.is_closed and str(api.requests[0].url) == "http://injected.test/v1/me"
    http.close()


def test_async_resources(api: MockApi) -> None:
    api.on("POST", "/v1/subjects", json_response(subject(photo_count=1), 201))
    api.on("GET", "/v1/subjects", json_response({"data": [subject("a")], "next_cursor": "n"}),
           json_response({"data": [subject("b")], "next_cursor": None}))  # fmt: skip
    api.on("POST", "/v1/generations", json_response(job_json("generation"), 202))
    api.on("GET", "/v1/checkpoints/c-1/file", json_response({}, 202, headers={"Retry-After": "1"}),
           httpx.Response(200, content=b"lora"))  # fmt: skip

    async def run() -> None:
        async with api.async_client() as client:
            created = await client.subjects.create_with_photos("Rex", "dog", [JPEG])
            assert created.photo_count == 1
            assert [s.id async for s in client.subjects.iter()] == ["a", "b"]
            generation = await client.generations.create("p", [("c-1", 1.5)])
            assert generation.status == "queued"
            assert await client.checkpoints.download("c-1", format="lora") == b"lora"

    asyncio.run(run())
    assert body(api.requests[3])["checkpoints"] == [{"id": "c-1", "scale": 1.5}]
    assert api.requests[3].headers["Idempotency-Key"]


def test_a_training_stands_for_its_checkpoint(api: MockApi) -> None:
    api.on("POST", "/v1/generations", json_response(job_json("generation"), 202))
    done = Training.model_validate(job_json(status="succeeded"))
    with api.client() as client:
        client.generations.create("p", [(done, 0.8)])
        with pytest.raises(ValueError, match="has no checkpoint"):
            client.generations.create("p", [Training.model_validate(job_json())])
    assert body(api.requests[0])["checkpoints"] == [{"id": "c-1", "scale": 0.8}] and len(api.requests) == 1
