"""The README's "upload 3 photos, then generate" example runs as written (against the mock service)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import svdiff_client
from mockapi import PING, MockApi, job_json, json_response, sse_event, stream

README = Path(__file__).resolve().parent.parent / "README.md"


def example() -> str:
    text = README.read_text()
    section = text.split("## Upload 3 photos, then generate", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_readme_example_runs(api: MockApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = example()
    assert len(code.strip().splitlines()) <= 10
    subject = {"id": "s-1", "name": "Rex", "class_word": "dog", "token": "sks", "photo_count": 3,
               "created_at": "2025-01-01T00:00:00Z"}  # fmt: skip
    images = [{"url": f"https://cdn.example.test/{i}.png", "seed": i, "width": 64, "height": 64} for i in range(2)]
    api.on("POST", "/v1/subjects", json_response({"subject": subject, "training": job_json()}, 201))
    api.on("GET", "/v1/trainings/job-1/events", stream([PING, sse_event(job_json(status="succeeded"), "1")]))
    api.on("POST", "/v1/generations", json_response(job_json("generation", job_id="g-1"), 202))
    api.on("GET", "/v1/generations/g-1/events", httpx.Response(404))  # no stream: polled
    api.on("GET", "/v1/generations/g-1", json_response(job_json("generation", "succeeded", "g-1", images=images)))
    for i in range(2):
        api.on("GET", f"/{i}.png", httpx.Response(200, content=f"png-{i}".encode()))

    real = svdiff_client.Client

    def client(**kwargs: Any) -> svdiff_client.Client:
        return real(**kwargs, transport=httpx.MockTransport(api.handler))

    monkeypatch.setattr(svdiff_client, "Client", client)
    monkeypatch.chdir(tmp_path)
    for name in ("rex1.jpg", "rex2.jpg", "rex3.jpg"):
        Path(name).write_bytes(b"\xff\xd8\xff" + name.encode())
    exec(compile(code, str(README), "exec"), {})
    assert Path("rex-0.png").read_bytes() == b"png-0" and Path("rex-1.png").read_bytes() == b"png-1"
    generation = next(r for r in api.requests if r.url.path == "/v1/generations")
    assert b'"checkpoints":[{"id":"c-1"}]' in generation.content.replace(b" ", b"")
    assert b"a photo of sks dog on a beach" in generation.content
