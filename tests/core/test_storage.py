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
