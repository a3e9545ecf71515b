"""Bodies are authenticated before they are read and capped (413), and failed authentication is limited per
client address (429): issue 10, item 1."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import auth
from tests.images import dog

HUGE = 150 * 1024 * 1024


def app_with(runtime: Any, **settings: Any) -> Any:
    return create_app(dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=settings)))


def call(app: Any, headers: dict[str, str], chunks: list[bytes], method: str = "POST",
         path: str = "/v1/trainings") -> tuple[int, dict[str, Any], int]:  # fmt: skip
    """One raw ASGI request: (status, problem body, how many body bytes the app pulled)."""
    pulled, sent = 0, []
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if not queue:
            return {"type": "http.disconnect"}
        chunk = queue.pop(0)
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "server": ("testserver", 80), "client": ("203.0.113.7", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body or b"{}"), pulled


def test_a_huge_body_without_a_key_is_refused_before_a_byte_is_read(runtime: Any) -> None:
    app = app_with(runtime)
    chunk = b"x" * (1024 * 1024)
    status, problem, pulled = call(app, {"content-type": "application/json", "content-length": str(HUGE)},
                                   [chunk] * 150)  # fmt: skip
    assert (status, pulled) == (401, 0) and problem["status"] == 401
    status, _, pulled = call(app, {"content-type": "application/json", "authorization": "Bearer svd_wrong"},
                             [chunk] * 150)  # fmt: skip
    assert (status, pulled) == (401, 0)


def test_a_json_body_over_the_cap_is_413(runtime: Any, user: dict[str, str]) -> None:
    app = app_with(runtime)
    headers = {"content-type": "application/json", **auth(user)}
    status, problem, pulled = call(app, {**headers, "content-length": str(HUGE)}, [b"x" * 1024])
    assert (status, pulled) == (413, 0) and "at most" in problem["detail"]
    status, problem, pulled = call(app, headers, [b"x" * (256 * 1024)] * 8)  # streamed, no Content-Length
    assert status == 413 and pulled <= 1024 * 1024 + 256 * 1024
    body = json.dumps({"subject_ids": ["nope"]}).encode()
    status, _, _ = call(app, {**headers, "content-length": str(len(body))}, [body])
    assert status == 404  # a small body with a good key reaches the route


def test_a_multipart_upload_over_the_total_cap_is_413(runtime: Any, user: dict[str, str]) -> None:
    api = TestClient(app_with(runtime, max_photos_per_subject=1, max_photo_bytes=4096, max_json_body_bytes=4096))
    subject = api.post("/v1/subjects", json={"name": "Rex", "class_word": "dog"}, headers=auth(user)).json()
    files = [("files", (f"{i}.jpg", dog(i), "image/jpeg")) for i in range(3)]
    response = api.post(f"/v1/subjects/{subject['id']}/photos", files=files, headers=auth(user))
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert api.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json()["photo_count"] == 0


def test_failed_authentication_is_limited_per_address(runtime: Any, user: dict[str, str]) -> None:
    app = app_with(runtime, rate_limit_failures=3, rate_limit_storage="memory://")
    statuses = [call(app, {"authorization": f"Bearer svd_guess{i}"}, [b"{}"])[0] for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    status, problem, _ = call(app, {"authorization": "Bearer svd_guess9"}, [], method="GET", path="/v1/me")
    assert status == 429 and "failed authentications" in problem["detail"]
    good = {"content-type": "application/json", **auth(user)}
    assert call(app, good, [b"{}"], method="GET", path="/v1/me")[0] == 200  # a valid key from there still works
