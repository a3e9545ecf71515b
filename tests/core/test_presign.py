"""The fast S3 link signer gives exactly boto3's links, or is not used."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock

import httpx
import pytest

from core.presign import fast_presigner
from core.settings import Settings
from core.storage import S3Storage, make_s3_client, make_storage

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # AWS's documentation example
WHEN = datetime(2026, 12, 4, 23, 59, 58, tzinfo=UTC)
KEYS = [
    "users/6f1c2d3e-0000-4000-8000-000000000001/generations/9a8b7c6d-0000-4000-8000-000000000002/0.png",
    "users/u/checkpoints/c/shifts.safetensors",
    "priors/abc123/dog/17.png",
    "a~b/c-d_e.f",
]
FILENAMES = [None, "6f1c2d3e-0000-4000-8000-000000000001.safetensors", 'odd name; "quoted".bin']
ENDPOINTS = [
    ("http://127.0.0.1:9000", "us-east-1"),
    ("https://minio.example.com:443", "eu-west-1"),  # a default port is not signed
    ("https://files.example.com:8443", "eu-central-1"),
    (None, "us-east-1"),  # AWS itself
    (None, "ap-southeast-2"),
]


def settings(endpoint: str | None, region: str) -> Settings:
    return Settings(storage="s3", s3_endpoint_url=endpoint, s3_region=region, s3_bucket="svdiff",
                    s3_access_key_id="AKIDEXAMPLE", s3_secret_access_key=SECRET)  # fmt: skip


def boto3_link(client: Any, key: str, filename: str | None) -> str:
    params = {"Bucket": "svdiff", "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN.replace(tzinfo=None)):
        return str(client.generate_presigned_url("get_object", Params=params, ExpiresIn=900))


@pytest.mark.parametrize(("endpoint", "region"), ENDPOINTS)
def test_links_are_boto3s_links(endpoint: str | None, region: str) -> None:
    config = settings(endpoint, region)
    client = make_s3_client(config)
    presigner = fast_presigner(client, "svdiff", config.s3_access_key_id, config.s3_secret_access_key)
    assert presigner is not None
    for key in KEYS:
        assert presigner.handles(key)
        for filename in FILENAMES:
            assert presigner.url(key, 900, filename, now=WHEN) == boto3_link(client, key, filename)


def test_other_keys_and_credentials_stay_with_boto3() -> None:
    config = settings("http://127.0.0.1:9000", "us-east-1")
    client = make_s3_client(config)
    presigner = fast_presigner(client, "svdiff", "AKIDEXAMPLE", config.s3_secret_access_key)
    assert presigner is not None
    assert not presigner.handles("")
    for key in ("a b.png", "ü.png", "a//b", "a/./b", "../x", "/lead", "trail/", "a+b"):
        assert not presigner.handles(key)
        with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN.replace(tzinfo=None)):
            assert S3Storage(client, "svdiff", presigner=presigner).presigned_url(key, 900) == boto3_link(
                client, key, None)  # fmt: skip
    assert fast_presigner(client, "svdiff", None, None) is None  # the default credential chain
    assert fast_presigner(client, "svdiff", "ANOTHERKEY", "x") is None  # not the key boto3 signs with


def test_a_signer_that_would_differ_is_not_used() -> None:
    config = settings("http://127.0.0.1:9000", "us-east-1")
    client = make_s3_client(config)
    assert fast_presigner(client, "svdiff", "AKIDEXAMPLE", "not-the-secret-boto3-signs-with") is None


def test_make_storage_signs_fast_at_the_public_endpoint() -> None:
    config = settings("http://minio:9000", "us-east-1").model_copy(
        update={"s3_public_endpoint_url": "https://files.example.com"})  # fmt: skip
    storage = make_storage(config)
    assert isinstance(storage, S3Storage) and storage.presigner is not None
    assert storage.presigned_url(KEYS[0], 600).startswith("https://files.example.com/svdiff/users/")


def test_a_fast_link_downloads_the_blob(runtime: Any) -> None:
    storage = runtime.storage
    assert isinstance(storage, S3Storage) and storage.presigner is not None
    storage.put("users/u/generations/g/0.png", b"png bytes", "image/png")
    response = httpx.get(storage.presigned_url("users/u/generations/g/0.png", 600, "g.png"))
    assert response.status_code == 200 and response.content == b"png bytes"
    assert response.headers["content-disposition"] == 'attachment; filename="g.png"'
