from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import BlobNotFound, StorageUnavailable
from core.storage import DownloadSigner, LocalStorage, S3Storage, Storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "blobs", DownloadSigner("k" * 32, "http://127.0.0.1:8000"))
        return
    runtime: Any = request.getfixturevalue("runtime")
    client = runtime.storage.client
    bucket = f"contract-{tmp_path.name[-8:].lower().replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    yield S3Storage(client, bucket)


def test_storage_contract(storage: Storage) -> None:
    storage.check()
    storage.put("users/u/a/1.bin", b"one")
    storage.put("users/u/a/2.bin", b"two" * 1000)
    storage.put("users/u/b/3.bin", b"three")
    assert storage.get("users/u/a/1.bin") == b"one"
    assert b"".join(storage.iter_chunks("users/u/a/2.bin")) == b"two" * 1000
    assert storage.exists("users/u/a/1.bin") and not storage.exists("users/u/a/9.bin")
    assert storage.size("users/u/a/2.bin") == 3000
    assert storage.delete_prefix("users/u/a/") == 2
    assert not storage.exists("users/u/a/1.bin") and storage.exists("users/u/b/3.bin")
    storage.delete("users/u/b/3.bin")
    storage.delete("users/u/b/3.bin")  # deleting twice is fine
    with pytest.raises(BlobNotFound):
        storage.get("users/u/b/3.bin")
    with pytest.raises(BlobNotFound):
        storage.size("nothing")


def test_s3_presigned_url_downloads(runtime: Any) -> None:
    runtime.storage.put("tests/presigned.txt", b"hello")
    url = runtime.storage.presigned_url("tests/presigned.txt", 60, "hello.txt")
    response = httpx.get(url)
    assert response.content == b"hello" and "hello.txt" in response.headers["content-disposition"]


def test_s3_down_is_unavailable() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url="http://127.0.0.1:1", region_name="us-east-1", aws_access_key_id="x",
        aws_secret_access_key="y", config=Config(connect_timeout=0.5, retries={"max_attempts": 0}),
    )  # fmt: skip
    with pytest.raises(StorageUnavailable):
        S3Storage(client, "b").get("k")


def test_local_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, DownloadSigner("k" * 32, "http://x"))
    for key in ("../evil", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError):
            storage.put(key, b"x")


def test_download_tokens_expire_and_cannot_be_forged() -> None:
    signer = DownloadSigner("secret" * 6, "http://127.0.0.1:8000")
    token = signer.token("users/u/x.png", expires_at=2_000_000_000, filename="x.png")
    assert signer.verify(token, now=1_900_000_000) == ("users/u/x.png", "x.png")
    assert signer.verify(token, now=2_100_000_000) is None
    payload, _, mac = token.partition(".")
    assert signer.verify(payload[:-2] + "AA." + mac, now=1) is None
    assert DownloadSigner("other" * 7, "http://x").verify(token, now=1) is None
    assert signer.verify("garbage", now=1) is None


@pytest.mark.parametrize("token", ["abc.é", "é.abc", "é.é", "\x00.\x00", "abc.\udcff"])
def test_a_token_with_non_ascii_characters_is_refused(token: str) -> None:
    assert DownloadSigner("secret" * 6, "http://127.0.0.1:8000").verify(token, now=1) is None


def test_an_unusable_local_blob_folder_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "blobs"
    not_a_folder.write_text("a file where the blob folder should be")
    storage = LocalStorage(not_a_folder, DownloadSigner("k" * 32, "http://x"))
    for call in (lambda: storage.put("a/b.png", b"x"), lambda: storage.get("a/b.png"),
                 lambda: storage.delete("a/b.png"), lambda: storage.delete_prefix("a/"),
                 lambda: list(storage.iter_chunks("a/b.png")), lambda: storage.size("a/b.png")):  # fmt: skip
        with pytest.raises(StorageUnavailable, match="blob folder"):
            call()
    with pytest.raises(StorageUnavailable):
        storage.check()


def test_a_missing_local_blob_is_not_found(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, DownloadSigner("k" * 32, "http://x"))
    with pytest.raises(BlobNotFound):
        storage.get("nothing/here.png")
    with pytest.raises(BlobNotFound):
        list(storage.iter_chunks("nothing/here.png"))
    storage.delete("nothing/here.png")  # deleting what is not there is fine


def test_an_unusable_blob_folder_answers_503_to_an_upload(client, user, runtime, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import auth
    from tests.images import dog

    subject = client.post("/v1/subjects", json={"name": "Rex", "class_word": "dog"}, headers=auth(user)).json()
    blocked = tmp_path / "blobs"
    blocked.write_text("not a folder")
    monkeypatch.setattr(runtime, "storage", LocalStorage(blocked, DownloadSigner("k" * 32, "http://x")))
    response = client.post(f"/v1/subjects/{subject['id']}/photos", headers=auth(user),
                           files=[("files", ("a.jpg", dog(0), "image/jpeg"))])  # fmt: skip
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    monkeypatch.undo()
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json()["photo_count"] == 0


def test_signed_links_use_the_public_endpoint(runtime: Any) -> None:
    from core.storage import make_storage

    settings = runtime.settings.model_copy(update={"s3_public_endpoint_url": "https://files.example.com"})
    storage = make_storage(settings)
    url = storage.presigned_url("some/key.png", 60)
    assert url.startswith("https://files.example.com/") and "Signature=" in url
    assert storage.client.meta.endpoint_url == runtime.settings.s3_endpoint_url  # the service still talks inside
