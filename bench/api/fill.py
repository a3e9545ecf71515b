"""The benchmark's data, written with bulk SQL (INSERT ... SELECT generate_series): its users and their API keys,
a user with a long history of finished generations, users with subjects, and a backlog of queued generations spread
over many users, in the fair order the service itself would have given them.

Every id and key derives from the run's secret token and a user number `k` (`user_id(token, k)`, `api_key(token,
k)`), so the benchmark can authenticate as any user it wrote without keeping a list.

The backlog: user k queues 1 to 32 generations (32 is the default per-user cap of the inference queue), all at once
and in user order. Nothing departs (no worker runs), so the head round stays 0 and, as `core.fairness.assign_round`
would give them, a user's n-th job joins round n, taking the next turn in it (`round_seq`: the round's `joined` so
far, then its turn in creation order); `queue_rounds` counts them (`core.positions`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

QUEUE = "inference"
MAX_PER_USER = 32  # MAX_ACTIVE_JOBS_PER_USER's default for the inference queue
PARAMS: dict[str, Any] = {  # what POST /v1/generations stores for a plain request (api.services.jobs.create_generation)
    "prompt": "a photo of zwx dog on a beach", "negative_prompt": None, "checkpoints": [], "num_images": 1,
    "seed": 1234, "steps": 30, "guidance_scale": None, "width": None, "height": None, "scheduler": None,
    "output_format": "png", "quality": None, "aspect_ratio": None,
}  # fmt: skip
USER_ID = "md5(%(token)s || '-user-' || {k})::uuid::text"
KEY = "'svd_' || %(token)s || '_' || lpad(({k})::text, 9, '0')"


def user_id(token: str, k: int) -> str:
    return str(uuid.UUID(hashlib.md5(f"{token}-user-{k}".encode()).hexdigest()))


def api_key(token: str, k: int) -> str:
    return f"svd_{token}_{k:09d}"


@dataclass(frozen=True)
class Layout:
    """Which user numbers play which part."""

    history_user: int = 0  # many finished generations (and a few queued ones): the list of 100
    readers: range = range(1, 33)  # 3 subjects of 2 photos each: GET /v1/subjects
    creators: range = range(100, 356)  # no jobs: POST /v1/generations
    backlog_from: int = 1000  # the backlog's users, numbered from here


def _sql_user_id(k: str) -> str:
    return USER_ID.format(k=k)


def add_users(conn: psycopg.Connection, token: str, first: int, last: int) -> None:
    """Users first..last (inclusive), each with one API key."""
    conn.execute(
        f"INSERT INTO users (id, name, role, webhook_secret, created_at) "
        f"SELECT {_sql_user_id('k')}, 'bench-' || k, 'user', 'whsec_' || md5(%(token)s || k), now() "
        f"FROM generate_series(%(first)s::bigint, %(last)s::bigint) k",
        {"token": token, "first": first, "last": last},
    )
    conn.execute(
        f"INSERT INTO api_keys (id, user_id, key_hash, prefix, created_at) "
        f"SELECT md5(%(token)s || '-key-' || k)::uuid::text, {_sql_user_id('k')}, "
        f"encode(sha256(convert_to(key, 'UTF8')), 'hex'), left(key, 10), now() "
        f"FROM (SELECT k, {KEY.format(k='k')} AS key FROM generate_series(%(first)s::bigint, %(last)s::bigint) k) s",
        {"token": token, "first": first, "last": last},
    )


def add_subjects(conn: psycopg.Connection, token: str, users: range, per_user: int = 3, photos: int = 2) -> None:
    tokens = ["sks", "zwx", "qlt", "vrk", "pfy", "ohwx"][:per_user]
    conn.execute(
        f"INSERT INTO subjects (id, user_id, name, class_word, token, created_at) "
        f"SELECT md5(%(token)s || '-subject-' || k || '-' || s)::uuid::text, {_sql_user_id('k')}, "
        f"'subject ' || s, 'dog', (%(tokens)s::text[])[s], now() - (s || ' minutes')::interval "
        f"FROM generate_series(%(first)s::bigint, %(last)s::bigint) k, generate_series(1, %(per)s) s",
        {"token": token, "first": users.start, "last": users.stop - 1, "per": per_user, "tokens": tokens},
    )
    conn.execute(
        "INSERT INTO photos (id, subject_id, user_id, storage_key, content_type, width, height, size_bytes, sha256, "
        "created_at) SELECT md5(s.id || '-photo-' || p)::uuid::text, s.id, s.user_id, "
        "'users/' || s.user_id || '/subjects/' || s.id || '/photos/' || p || '.jpg', 'image/jpeg', 512, 512, "
        "80000, md5(s.id || p) || md5(p || s.id), now() FROM subjects s, generate_series(1, %(photos)s) p "
        "WHERE s.name LIKE 'subject %%'",
        {"photos": photos},
    )


def add_history(conn: psycopg.Connection, token: str, k: int, jobs: int, every_seconds: float = 7.0) -> None:
    """`jobs` succeeded generations of user k, one every few seconds until a minute ago, with 1 to 4 images each:
    the most recent ones finished within the queue's throughput window, so queued jobs get an ETA."""
    params = {"token": token, "k": k, "jobs": jobs, "every": every_seconds, "params": json.dumps(PARAMS)}
    conn.execute(
        f"INSERT INTO jobs (id, kind, user_id, queue, status, params, progress_step, progress_total, pace_from_step, "
        f"attempts, cancel_requested, worker_id, task_id, heartbeat_at, enqueued_at, started_at, finished_at, "
        f"created_at, fair_round, round_seq) "
        f"SELECT md5(%(token)s || '-history-' || i)::uuid::text, 'generation', {_sql_user_id('%(k)s')}, "
        f"'{QUEUE}', 'succeeded', (%(params)s::jsonb || jsonb_build_object('num_images', 1 + i %% 4))::json, "
        f"30, 30, 1, 1, false, 'inference@bench', md5(%(token)s || '-htask-' || i)::uuid::text, t + interval '5 s', "
        f"t, t + interval '1 s', t + interval '5 s', t, 0, 0 "
        f"FROM (SELECT i, now() - interval '1 minute' - (%(jobs)s - i) * %(every)s * interval '1 second' AS t "
        f"FROM generate_series(1, %(jobs)s) i) h",
        params,
    )
    conn.execute(
        "INSERT INTO job_images (id, job_id, index, storage_key, seed, width, height, size_bytes, created_at) "
        "SELECT md5(j.id || '-image-' || x)::uuid::text, j.id, x, "
        "'users/' || j.user_id || '/generations/' || j.id || '/' || x || '.png', 1234 + x, 512, 512, 400000, "
        "j.finished_at FROM jobs j, generate_series(0, 3) x "
        "WHERE j.status = 'succeeded' AND x < (j.params->>'num_images')::int",
    )


def queue_jobs(conn: psycopg.Connection, token: str, counts: Sequence[tuple[int, int]]) -> int:
    """Queued generations: `counts` is (user k, jobs) in creation order; the users must exist. Returns the jobs."""
    conn.execute("CREATE TEMP TABLE spec (k bigint, c int) ON COMMIT DROP")
    with conn.cursor().copy("COPY spec (k, c) FROM STDIN") as copy:
        for row in counts:
            copy.write_row(row)
    return _queue_spec(conn, token)


def queue_backlog(conn: psycopg.Connection, token: str, first_user: int, jobs: int) -> tuple[int, int]:
    """`jobs` queued generations over users first_user.. (1 to 32 each, by a fixed pattern), creating the users.
    Returns (jobs, users)."""
    conn.execute(
        "CREATE TEMP TABLE spec ON COMMIT DROP AS "
        "WITH s AS (SELECT k, 1 + ((k * 7919) %% %(cap)s)::int AS c "
        "           FROM generate_series(%(first)s::bigint, %(first)s + %(jobs)s - 1) k), "
        "     cum AS (SELECT k, c, sum(c) OVER (ORDER BY k) - c AS before FROM s) "
        "SELECT k, least(c, %(jobs)s - before)::int AS c FROM cum WHERE before < %(jobs)s",
        {"first": first_user, "jobs": jobs, "cap": MAX_PER_USER},
    )
    last = conn.execute("SELECT max(k) FROM spec").fetchone()
    users = int(last[0]) - first_user + 1 if last and last[0] is not None else 0
    if users:
        add_users(conn, token, first_user, first_user + users - 1)
    return _queue_spec(conn, token), users


def _queue_spec(conn: psycopg.Connection, token: str) -> int:
    """Inserts the jobs of the temporary table `spec` (user k queues c jobs, users in creation order, each user's
    jobs at once), then counts them into their rounds."""
    base = conn.execute("SELECT greatest(now(), coalesce(max(created_at), now())) FROM jobs").fetchone()
    params = {"token": token, "params": json.dumps(PARAMS), "base": base[0] if base else None}
    inserted = conn.execute(
        f"INSERT INTO jobs (id, kind, user_id, queue, status, params, progress_step, progress_total, pace_from_step, "
        f"attempts, cancel_requested, task_id, enqueued_at, created_at, fair_round, round_seq) "
        f"SELECT md5(%(token)s || '-job-' || j.k || '-' || j.n)::uuid::text, 'generation', {_sql_user_id('j.k')}, "
        f"'{QUEUE}', 'queued', %(params)s::json, 0, 30, 0, 0, false, "
        f"md5(%(token)s || '-task-' || j.k || '-' || j.n)::uuid::text, j.t, j.t, j.n, coalesce(r.joined, 0) + j.turn "
        f"FROM (SELECT k, n, row_number() OVER (PARTITION BY n ORDER BY k) AS turn, "
        f"             %(base)s::timestamptz + row_number() OVER (ORDER BY k, n) * interval '1 microsecond' AS t "
        f"      FROM spec, generate_series(0, c - 1) n) j "
        f"LEFT JOIN queue_rounds r ON r.queue = '{QUEUE}' AND r.round = j.n",
        params,
    ).rowcount
    conn.execute(
        f"INSERT INTO queue_rounds (queue, round, joined, departed) "
        f"SELECT '{QUEUE}', n, count(*), 0 FROM spec, generate_series(0, c - 1) n GROUP BY n "
        f"ON CONFLICT (queue, round) DO UPDATE SET joined = queue_rounds.joined + excluded.joined"
    )
    conn.execute("DROP TABLE spec")
    return int(inserted)


def deepest_queued(conn: psycopg.Connection, limit: int) -> list[tuple[str, int]]:
    """(job id, user k) of the queued jobs last in the fair order, last first."""
    rows = conn.execute(
        f"SELECT j.id, substr(u.name, 7)::bigint FROM jobs j JOIN users u ON u.id = j.user_id "
        f"WHERE j.queue = '{QUEUE}' AND j.status = 'queued' AND u.name LIKE 'bench-%%' "
        f"ORDER BY j.fair_round DESC, j.created_at DESC, j.id DESC LIMIT %(limit)s",
        {"limit": limit},
    ).fetchall()
    return [(str(job), int(k)) for job, k in rows]


def queued_count(conn: psycopg.Connection) -> int:
    row = conn.execute(f"SELECT count(*) FROM jobs WHERE queue = '{QUEUE}' AND status = 'queued'").fetchone()
    return int(row[0]) if row else 0


def settle(conn: psycopg.Connection) -> None:
    """After a bulk fill (autocommit): VACUUM ANALYZE, as autovacuum would soon do in the middle of a run (and
    index-only scans want the visibility map), then a CHECKPOINT, so that writing the fill's dirty pages does not
    either."""
    conn.execute("VACUUM (ANALYZE)")
    conn.execute("CHECKPOINT")
