"""The production configuration on loopback, for the API benchmark: a fresh PostgreSQL database (dropped at the
end), Redis under a key prefix of its own (its keys deleted at the end), moto's S3 server on a free port, and the
API as the Docker image starts it (`uvicorn api.app:create_app --factory --workers 2`), in production mode."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("SVDIFF_BENCH_PG", "postgresql+psycopg://root@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SVDIFF_BENCH_REDIS", "redis://127.0.0.1:6379/14")
BUCKET = "svdiff-bench"


@dataclass
class Stack:
    """What the benchmark runs against: the API's base URL, its database and its settings."""

    url: str
    db_url: str
    env: dict[str, str]
    admin_key: str
    pids: list[int] = field(default_factory=list)  # the uvicorn master and its workers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A fresh database built by the migrations; dropped (with its connections) at the end."""
    import psycopg

    from core import migrate

    name = f"svdiff_bench_{secrets.token_hex(4)}"
    admin = _psycopg_url(PG_ADMIN_URL)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of this run's own on the benchmark's Redis database; its keys are deleted at the end."""
    import redis

    prefix = f"svdiff-bench-{secrets.token_hex(4)}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        client.close()


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server from the venv on a free loopback port, with the benchmark's bucket."""
    import boto3

    port = free_port()
    binary = shutil.which("moto_server", path=str(VENV_BIN)) or "moto_server"
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _listening(port), 30, "moto_server")
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                              region_name="us-east-1")  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        _stop(proc)


def production_env(db_url: str, prefix: str, s3_endpoint: str, admin_key: str, port: int) -> dict[str, str]:
    """The settings of a production deployment (real secret, bootstrap admin, PostgreSQL, Redis, S3), with rate
    limits off and the per-user job caps raised so that the benchmark's creates are not refused."""
    return {
        "SVDIFF_ENVIRONMENT": "production",
        "SVDIFF_SECRET_KEY": secrets.token_urlsafe(48),
        "SVDIFF_BOOTSTRAP_ADMIN_KEY": admin_key,
        "SVDIFF_DATABASE_URL": db_url,
        "SVDIFF_BROKER_URL": REDIS_URL,
        "SVDIFF_BROKER_TRANSPORT_OPTIONS": json.dumps({"global_keyprefix": prefix}),
        "SVDIFF_STORAGE": "s3",
        "SVDIFF_S3_ENDPOINT_URL": s3_endpoint,
        "SVDIFF_S3_BUCKET": BUCKET,
        "SVDIFF_S3_ACCESS_KEY_ID": "bench",
        "SVDIFF_S3_SECRET_ACCESS_KEY": "bench",
        "SVDIFF_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SVDIFF_RATE_LIMIT_ENABLED": "false",
        "SVDIFF_MAX_ACTIVE_JOBS_PER_USER": json.dumps({"training": 4, "inference": 1_000_000}),
        # compose's pools for an API process (README "Scale-out")
        "SVDIFF_DB_POOL_SIZE": "5",
        "SVDIFF_DB_MAX_OVERFLOW": "15",
    }


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _children(pid: int) -> list[int]:
    """The uvicorn master's worker processes (not multiprocessing's resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    children = [int(p) for p in path.read_text().split()] if path.exists() else []
    return [child for child in children if b"resource_tracker" not in _cmdline(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@contextlib.contextmanager
def api_server(env: dict[str, str], port: int, workers: int, log: Path) -> Iterator[list[int]]:
    """The Docker image's command (`docker/Dockerfile.api`) on a loopback port; yields the master's and the
    workers' process ids once `/readyz` answers."""
    cmd = [str(VENV_BIN / "uvicorn"), "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--proxy-headers"]  # fmt: skip
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url), 90, f"the API at {url} (log: {log})")
        wait_for(lambda: len(_children(proc.pid)) >= workers, 30, "the uvicorn workers")
        yield [proc.pid, *_children(proc.pid)]
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def production_stack(workers: int, log_dir: Path) -> Iterator[Stack]:
    """Database, Redis prefix, S3 server and the API, torn down in reverse order."""
    admin_key = "svd_" + secrets.token_urlsafe(32)
    port = free_port()
    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(database())
        prefix = stack.enter_context(redis_prefix())
        s3 = stack.enter_context(s3_server())
        env = production_env(db_url, prefix, s3, admin_key, port)
        pids = stack.enter_context(api_server(env, port, workers, log_dir / "api.log"))
        yield Stack(url=f"http://127.0.0.1:{port}", db_url=db_url, env=env, admin_key=admin_key, pids=pids)
