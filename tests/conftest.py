"""Service test fixtures: a fresh PostgreSQL database built by the migrations, Redis db 15 as the broker, an
S3-compatible server (moto) on loopback started here, and the API in-process. All are created lazily, only for
the tests that ask for them."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("SVDIFF_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SVDIFF_TEST_REDIS", "redis://127.0.0.1:6379/15")
ADMIN_KEY = "svd_test_admin_" + "k" * 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    binary = shutil.which("moto_server", path=str(VENV_BIN)) or "moto_server"
    proc = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database for this test session, schema built by running the migrations."""
    import psycopg

    from core import migrate

    name = f"svdiff_test_{secrets.token_hex(4)}"
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrate.upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def service_env(pg_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The settings of the test deployment, as environment variables (also given to worker processes).

    Every Redis key of this session (queues, unacknowledged messages, bindings) carries its own prefix, so test
    sessions running at the same time on one Redis never see, consume or wipe each other's messages."""
    import redis

    prefix = f"svdiff-test-{secrets.token_hex(4)}:"
    yield {
        "SVDIFF_ENVIRONMENT": "development",
        "SVDIFF_SECRET_KEY": secrets.token_hex(32),  # development with real services needs a real secret
        "SVDIFF_DATA_DIR": str(tmp_path_factory.mktemp("var")),
        "SVDIFF_DATABASE_URL": pg_url,
        "SVDIFF_BROKER_URL": REDIS_URL,
        "SVDIFF_BROKER_TRANSPORT_OPTIONS": json.dumps({"global_keyprefix": prefix}),
        "SVDIFF_STORAGE": "s3",
        "SVDIFF_S3_ENDPOINT_URL": s3_endpoint,
        "SVDIFF_S3_BUCKET": "svdiff-test",
        "SVDIFF_S3_ACCESS_KEY_ID": "test",
        "SVDIFF_S3_SECRET_ACCESS_KEY": "test",
        "SVDIFF_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "SVDIFF_PROGRESS_INTERVAL_SECONDS": "0",
        # counted in Redis as in production, but high enough for the suite; tests/api/test_rate_limit.py lowers them
        "SVDIFF_RATE_LIMIT_REQUESTS": "100000",
        "SVDIFF_RATE_LIMIT_JOBS": "100000",
        "SVDIFF_RATE_LIMIT_FAILURES": "100000",
    }
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*", count=500):
        client.delete(key)


def merged_env(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """`extra` over `base`, except broker transport options, whose JSON objects are merged (the key prefix stays)."""
    env = {**base, **extra}
    name = "SVDIFF_BROKER_TRANSPORT_OPTIONS"
    if name in base and name in extra:
        env[name] = json.dumps({**json.loads(base[name]), **json.loads(extra[name])})
    return env


@pytest.fixture(scope="session")
def runtime(service_env: dict[str, str]):  # type: ignore[no-untyped-def]
    from core.runtime import build_runtime
    from core.settings import Settings

    env: dict[str, object] = {k.removeprefix("SVDIFF_").lower(): v for k, v in service_env.items()}
    env["broker_transport_options"] = json.loads(service_env["SVDIFF_BROKER_TRANSPORT_OPTIONS"])
    settings = Settings(**env)  # type: ignore[arg-type]
    rt = build_runtime(settings)
    rt.storage.client.create_bucket(Bucket=settings.s3_bucket)  # type: ignore[attr-defined]
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def app(runtime):  # type: ignore[no-untyped-def]
    from api.app import create_app

    return create_app(runtime)


@pytest.fixture(scope="session")
def client(app) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:  # runs the lifespan: the bootstrap admin exists afterwards
        yield test_client


@pytest.fixture
def admin_headers(client: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def make_user(client: httpx.Client, role: str = "user") -> dict[str, str]:
    response = client.post(
        "/v1/users", json={"name": f"u-{secrets.token_hex(3)}", "role": role},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    body = response.json()
    return {"Authorization": f"Bearer {body['api_key']}", "id": body["id"], "secret": body["webhook_secret"]}


@pytest.fixture
def user(client: httpx.Client) -> dict[str, str]:
    """Headers (plus `id` and `secret`) of a fresh user; pass `auth(user)` as headers."""
    return make_user(client)


@pytest.fixture
def other_user(client: httpx.Client) -> dict[str, str]:
    return make_user(client)


def auth(user: dict[str, str]) -> dict[str, str]:
    return {"Authorization": user["Authorization"]}


def start_worker(
    service_env: dict[str, str], queues: str, extra_env: dict[str, str], app: str = "worker.app", name: str = "w"
) -> subprocess.Popen[bytes]:
    """A real Celery worker process (solo pool: killing it kills the task, as a lost machine would)."""
    env = {**os.environ, **merged_env(service_env, extra_env), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "--pool", "solo", "-n", f"{name}@%h"]
    cmd += ["--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "INFO"]
    log = open(Path(service_env["SVDIFF_DATA_DIR"]) / f"{name}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def cpu_worker(service_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker process on the CPU and webhook queues (clean-ups, reconciler, webhooks)."""
    extra = {"SVDIFF_ALLOW_PRIVATE_WEBHOOKS": "true", "SVDIFF_WEBHOOK_BACKOFF_BASE_SECONDS": "0.2"}
    proc = start_worker(service_env, "cpu,webhooks", extra, name="cpu-test")
    yield proc
    stop_worker(proc)


def drop_waiting_jobs(runtime: Any, *queues: str) -> None:
    """Cancel what earlier tests left waiting on these queues (jobs nobody ran, and their messages): workers
    claim the first queued job in the fair order, so a worker a test starts must find only that test's jobs."""
    from sqlalchemy import update

    from core import positions
    from core.db import session_scope
    from models import CANCELED, QUEUED, Job, utcnow

    with runtime.celery.connection_for_write() as connection:
        for queue in queues:
            connection.default_channel.queue_purge(queue)
    with session_scope(runtime.sessions) as session:
        waiting = (Job.queue.in_(queues), Job.status == QUEUED)
        session.execute(update(Job).where(*waiting).values(status=CANCELED, finished_at=utcnow()))
    with session_scope(runtime.sessions) as session:  # the bulk change bypassed the position counters
        positions.repair(session)


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` on a real uvicorn server on a loopback port, in a thread of this process; yields its base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_api(app: Any, client: httpx.Client) -> Iterator[str]:
    """The test API over real HTTP (live event streams, SDK clients), beside the in-process `client`."""
    with serving(app) as url:
        yield url
