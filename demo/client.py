"""A small HTTP client of the REST contract (API.md), as an app would write one: bearer key, problem+json errors,
jobs polled until they end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

FINAL = ("succeeded", "failed", "canceled")


class ApiError(RuntimeError):
    """A non-2xx answer, with its problem+json detail."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            body = response.json()
            detail = f"{body.get('title')}: {body.get('detail')} {body.get('errors') or ''}".strip()
        except ValueError:
            detail = response.text[:300]
        super().__init__(f"{response.request.method} {response.request.url.path} -> {response.status_code} {detail}")
        self.status = response.status_code


class Client:
    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self._check(self.http.get(path, params=params or None))

    def post(self, path: str, body: dict[str, Any] | None = None, *, job: bool = False) -> Any:
        headers = {"Idempotency-Key": str(uuid.uuid4())} if job else None  # safe to retry a job-creating POST
        return self._check(self.http.post(path, json=body or {}, headers=headers))

    def upload(self, path: str, files: list[Path], fields: dict[str, str] | None = None) -> Any:
        parts = [("files", (f.name, f.read_bytes(), "image/png")) for f in files]
        return self._check(self.http.post(path, data=fields or {}, files=parts))

    def download(self, url: str, target: Path) -> int:
        """A signed link (absolute, no API key needed) into a file; returns its size."""
        response = httpx.get(url, timeout=60)
        if response.status_code != 200:
            raise ApiError(response)
        target.write_bytes(response.content)
        return len(response.content)

    def wait(self, paths: list[str], report: Callable[[dict[str, Any]], None], timeout: float, *,
             check: Callable[[], None] | None = None, every: float = 1.0) -> list[dict[str, Any]]:
        """Poll the jobs at `paths` until each has ended; `report` sees every job whose status or step changed;
        `check` runs before each round (e.g. raises when the server died)."""
        seen: dict[str, tuple[str, int]] = {}
        jobs: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while True:
            if check is not None:
                check()
            for path in paths:
                if path in jobs and jobs[path]["status"] in FINAL:
                    continue
                job = jobs[path] = self.get(path)
                key = (job["status"], job["progress"]["step"])
                if seen.get(path) != key:
                    seen[path] = key
                    report(job)
            if all(j["status"] in FINAL for j in jobs.values()) and len(jobs) == len(paths):
                return [jobs[p] for p in paths]
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still running after {timeout:.0f} s: {[jobs[p]['id'] for p in paths]}")
            time.sleep(every)
