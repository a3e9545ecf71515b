"""Shortcuts for API tests."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from core import keys
from core.db import session_scope
from models import Checkpoint, Training
from tests.conftest import auth
from tests.images import dog


def subject_with_photos(client: httpx.Client, user: dict[str, str], count: int = 1) -> dict[str, Any]:
    files = [("files", (f"{i}.jpg", dog(i % 3), "image/jpeg")) for i in range(count)]
    data = {"name": "Rex", "class_word": "dog"}
    response = client.post("/v1/subjects", data=data, files=files, headers=auth(user))
    assert response.status_code == 201, response.text
    return dict(response.json())


def train(client: httpx.Client, user: dict[str, str], subject_ids: list[str], **fields: Any) -> httpx.Response:
    return client.post("/v1/trainings", json={"subject_ids": subject_ids, **fields}, headers=auth(user))


def finished_checkpoint(runtime: Any, training_id: str, data: bytes = b"shifts") -> str:
    """Store a checkpoint for a training as a worker would (tests of the API side only)."""
    with session_scope(runtime.sessions) as session:
        training = session.get(Training, training_id)
        assert training is not None
        checkpoint = Checkpoint(
            user_id=training.user_id, training_id=training.id, base_model="tiny", size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(), storage_key="",
        )  # fmt: skip
        session.add(checkpoint)
        session.flush()
        checkpoint.storage_key = keys.checkpoint_shifts(training.user_id, checkpoint.id)
        runtime.storage.put(checkpoint.storage_key, data)
        training.status = "succeeded"
        return checkpoint.id
