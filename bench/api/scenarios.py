"""What the benchmark asks the API: the requests of each scenario, and the data they need."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from bench.api import fill
from bench.api.wrk import Request

CREATE_BODY = json.dumps({"prompt": "a photo of zwx dog on a beach", "num_images": 1}, separators=(",", ":"))


@dataclass(frozen=True)
class Data:
    """The run's token (every key derives from it) and which users play which part."""

    token: str
    layout: fill.Layout

    def key(self, k: int) -> str:
        return fill.api_key(self.token, k)


def psycopg_url(db_url: str) -> str:
    return db_url.replace("postgresql+psycopg://", "postgresql://")


def prepare(db_url: str, history: int, small_backlog: int) -> tuple[Data, int]:
    """The users, subjects and history, and a first backlog of `small_backlog` queued jobs (a few of them the
    history user's, so its list shows queued jobs too). Returns the data and the next free user number."""
    layout = fill.Layout()
    data = Data(secrets.token_hex(12), layout)
    own = min(4, small_backlog)
    with psycopg.connect(psycopg_url(db_url)) as conn:
        fill.add_users(conn, data.token, layout.history_user, layout.history_user)
        fill.add_users(conn, data.token, layout.readers.start, layout.readers.stop - 1)
        fill.add_users(conn, data.token, layout.creators.start, layout.creators.stop - 1)
        fill.add_subjects(conn, data.token, layout.readers)
        fill.add_history(conn, data.token, layout.history_user, history)
        fill.queue_jobs(conn, data.token, [(layout.history_user, own)] if own else [])
        _, users = fill.queue_backlog(conn, data.token, layout.backlog_from, small_backlog - own)
        conn.commit()
        conn.autocommit = True
        fill.settle(conn)
    return data, layout.backlog_from + users


def grow_backlog(db_url: str, data: Data, first_user: int, total: int) -> int:
    """Queues jobs of new users until `total` wait; VACUUM ANALYZE and CHECKPOINT; returns the jobs queued."""
    with psycopg.connect(psycopg_url(db_url)) as conn:
        missing = total - fill.queued_count(conn)
        if missing > 0:
            fill.queue_backlog(conn, data.token, first_user, missing)
        conn.commit()
        conn.autocommit = True
        fill.settle(conn)
        return fill.queued_count(conn)


def db_sessions(db_url: str) -> int:
    """Sessions ever opened on the benchmark's database (PostgreSQL's count; this one's own included)."""
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(psycopg_url(db_url)) as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def reads(data: Data) -> list[Request]:
    """GET /v1/subjects of each reader (3 subjects each), in turn."""
    return [Request("GET", "/v1/subjects", data.key(k)) for k in data.layout.readers]


def creates(data: Data) -> list[Request]:
    """POST /v1/generations by each creator in turn, each with its own Idempotency-Key."""
    return [Request("POST", "/v1/generations", data.key(k), CREATE_BODY) for k in data.layout.creators]


def job_gets(db_url: str, data: Data, count: int = 200) -> list[Request]:
    """GET /v1/generations/{id} of the jobs last in the fair order, by their owners."""
    with psycopg.connect(psycopg_url(db_url)) as conn:
        deepest = fill.deepest_queued(conn, count)
    return [Request("GET", f"/v1/generations/{job}", data.key(k)) for job, k in deepest]


def list100(data: Data) -> list[Request]:
    """The history user's first page of 100 generations (newest first: queued and finished ones)."""
    return [Request("GET", "/v1/generations?limit=100", data.key(data.layout.history_user))]


def probe(url: str, request: Request) -> tuple[int, dict[str, Any]]:
    """One request of a scenario, outside wrk: its status and JSON answer, to check the scenario asks what it
    means to ask."""
    headers = {"Authorization": f"Bearer {request.key}"}
    if request.body:
        headers |= {"Content-Type": "application/json", "Idempotency-Key": f"probe-{secrets.token_hex(8)}"}
    response = httpx.request(request.method, url + request.path, headers=headers, content=request.body or None,
                             timeout=30)  # fmt: skip
    return response.status_code, response.json()


def check(url: str, request: Request, code: int, **expected: Any) -> None:
    """Raises unless the probe answers HTTP `code` and, for each `name=value`, `len(answer["data"])` (name
    `count`) or `answer[name]` equals it."""
    got_code, answer = probe(url, request)
    got = {name: len(answer["data"]) if name == "count" else answer.get(name) for name in expected}
    if got_code != code or got != expected:
        raise RuntimeError(f"{request.method} {request.path}: {got_code} {got}, expected {code} {expected}")
