"""The local blob backend's download route serves each image with the Content-Type S3 would."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes import files
from core.storage import DownloadSigner, LocalStorage


@pytest.mark.parametrize(
    ("key", "content_type"),
    [("g/0.png", "image/png"), ("g/0.jpg", "image/jpeg"), ("g/0.webp", "image/webp"),
     ("c/shifts.safetensors", "application/octet-stream")],
)  # fmt: skip
def test_local_downloads_serve_the_content_type_of_their_format(tmp_path: Path, key: str, content_type: str) -> None:
    storage = LocalStorage(tmp_path, DownloadSigner("k" * 32, "http://testserver"))
    storage.put(key, b"bytes")
    app = FastAPI()
    app.include_router(files.router)
    app.state.runtime = SimpleNamespace(storage=storage)
    response = TestClient(app).get(storage.presigned_url(key, 60).removeprefix("http://testserver"))
    assert response.status_code == 200 and response.content == b"bytes"
    assert response.headers["content-type"] == content_type
