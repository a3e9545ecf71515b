"""A scripted stand-in for the service over httpx.MockTransport: canned answers per route, every request kept."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
from svdiff_client import AsyncClient, Client

BASE = "https://api.example.test"
KEY = "svd_test_key"
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response] | Exception


def job_json(kind: str = "training", status: str = "queued", job_id: str = "job-1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": job_id, "kind": kind, "status": status, "progress": {"step": 0, "total": 10}, "queue_position": None,
        "eta_seconds": None, "params": {}, "error": None, "created_at": "2025-01-01T00:00:00Z", "started_at": None,
        "finished_at": None,
    }  # fmt: skip
    if kind == "training":
        body.update(subject_ids=["s-1"], checkpoint_id="c-1" if status == "succeeded" else None)
    else:
        body["images"] = []
    body.update(extra)
    return body


def problem(status: int, detail: str = "", headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    body = {"type": f"https://svdiff.dev/problems/{status}", "title": f"Title {status}", "status": status,
            "detail": detail, "instance": "/v1/x", **extra}  # fmt: skip
    headers = {"content-type": "application/problem+json", **(headers or {})}
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def sse_event(job: dict[str, Any], event_id: str | None = None) -> bytes:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines += ["event: job", "data: " + json.dumps(job, separators=(",", ":"))]
    return ("\n".join(lines) + "\n\n").encode()


PING = b": ping\n\n"
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}


class ChunkStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body given chunk by chunk, optionally ending in an exception (a connection that breaks) or
    waiting `pause` seconds between chunks."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None, pause: float = 0.0) -> None:
        self.chunks, self.error, self.pause = chunks, error, pause

    def __iter__(self) -> Iterator[bytes]:
        import time

        for chunk in self.chunks:
            if self.pause:
                time.sleep(self.pause)
            yield chunk
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.pause:
                await asyncio.sleep(self.pause)
            yield chunk
        if self.error is not None:
            raise self.error


def stream(chunks: list[bytes], error: Exception | None = None, pause: float = 0.0) -> httpx.Response:
    return httpx.Response(200, headers=SSE_HEADERS, stream=ChunkStream(chunks, error, pause))


class MockApi:
    """`api.on("GET", "/v1/me", answer, ...)` queues answers for a route (the last one repeats); `requests` holds
    every request received, in order."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], deque[Answer]] = defaultdict(deque)
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers: Answer) -> MockApi:
        self.routes[(method, path)].extend(answers)
        return self

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return problem(404, f"no mock for {request.method} {request.url.path}")
        answer = queue.popleft() if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        if isinstance(answer.stream, ChunkStream):  # a stream is consumed once: hand out a fresh response
            body = answer.stream
            return httpx.Response(answer.status_code, headers=answer.headers, stream=ChunkStream(
                body.chunks, body.error, body.pause))  # fmt: skip
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    def handler(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return self._answer(request)

    async def async_handler(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self._answer(request)

    def paths(self, method: str | None = None) -> list[str]:
        return [r.url.path for r in self.requests if method is None or r.method == method]

    def client(self, sleeps: list[float] | None = None, **options: Any) -> Client:
        client = Client(KEY, BASE, transport=httpx.MockTransport(self.handler), **options)
        client._sleep = (sleeps if sleeps is not None else []).append
        return client

    def async_client(self, sleeps: list[float] | None = None, **options: Any) -> AsyncClient:
        client = AsyncClient(KEY, BASE, transport=httpx.MockTransport(self.async_handler), **options)
        recorded = sleeps if sleeps is not None else []

        async def sleep(delay: float) -> None:
            recorded.append(delay)

        client._sleep = sleep
        return client


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)
