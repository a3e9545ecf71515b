"""The pieces `make bench-faults` runs on loopback and breaks on purpose, each its own process so that a fault is
a real one: a private PostgreSQL cluster (initdb in a temporary folder, its own port: the machine's shared server
is never touched), a private redis-server (no persistence: a restart comes back empty), moto's S3 server behind a
TCP proxy (moto keeps its objects in memory, so an outage is the proxy refusing and cutting connections, as a
server that is down would, while the stored objects survive it), the API (`bench.api.stack.api_server`) and the
Celery workers as docker-compose.yml starts them (`svdiff-service worker --queues ...`)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.api.stack import ROOT, VENV_BIN, free_port, wait_for

PG_BIN = Path(os.environ.get("SVDIFF_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = os.environ.get("SVDIFF_BENCH_REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pg_tool(name: str) -> str:
    found = PG_BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


class Postgres:
    """A private cluster: PostgreSQL refuses to run as root, so as root it runs as the `postgres` account."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.log = folder / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = (["runuser", "-u", self.user, "--"] if self.user else []) + list(args)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr[-2000:]}")

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run(_pg_tool("initdb"), "-D", str(self.data), "-A", "trust", "-U", "root", "--no-sync", "-E", "UTF8")

    def _options(self) -> str:
        # fsync off: a crash of the server (what `restart -m immediate` is) loses nothing the kernel holds; only a
        # crash of the machine would. synchronous_commit stays on: off, a crash loses commits already answered
        # (a create the API answered 202 whose job is not there after the restart: the first run did lose one).
        return (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=200")  # fmt: skip

    def start(self) -> None:
        self._run(_pg_tool("pg_ctl"), "-D", str(self.data), "-o", self._options(), "-l", str(self.log), "-w",
                  "-t", "60", "start")  # fmt: skip

    def restart(self, mode: str = "immediate") -> None:
        """`immediate`: every backend dies at once, as a crashed server's would (recovery replays the WAL)."""
        self._run(_pg_tool("pg_ctl"), "-D", str(self.data), "-o", self._options(), "-l", str(self.log), "-w",
                  "-t", "60", "-m", mode, "restart")  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_pg_tool("pg_ctl"), "-D", str(self.data), "-w", "-t", "30", "-m", "immediate", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://root@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def postgres(folder: Path) -> Iterator[Postgres]:
    """The private cluster with a database `svdiff` built by the migrations; stopped and removed at the end."""
    import psycopg

    from core import migrate

    server = Postgres(folder)
    try:
        server.init()
        server.start()
        with psycopg.connect(f"postgresql://root@127.0.0.1:{server.port}/postgres", autocommit=True) as conn:
            conn.execute('CREATE DATABASE "svdiff"')
        migrate.upgrade(server.url("svdiff"))
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()


class Redis:
    """A private redis-server without persistence: restarted, it comes back empty (every message lost)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.folder), "--protected-mode", "no"]  # fmt: skip
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: _listening(self.port), 30, "redis-server")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        wait_for(lambda: not _listening(self.port), 10, "redis-server to go")

    def flushall(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[Redis]:
    server = Redis(folder)
    try:
        server.start()
        yield server
    finally:
        server.kill()


class TcpProxy:
    """Loopback port -> moto's port, byte for byte. `down()` closes the listening socket (new connections are
    refused) and cuts the open ones, as a server that went away would; `up()` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.direct = ""  # the server itself, past the proxy (the bench's own reads)

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="s3-proxy", daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            src.close()


BUCKET = "svdiff-faults"


@contextlib.contextmanager
def s3(folder: Path) -> Iterator[TcpProxy]:
    """moto's S3 server with a versioned bucket (every write of a key is kept, so that a job's output written twice
    with different bytes shows), behind the proxy the service uses."""
    port = free_port()
    binary = shutil.which("moto_server", path=str(VENV_BIN)) or "moto_server"
    with open(folder / "moto.log", "ab") as log:
        proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    proxy = TcpProxy(port)
    proxy.direct = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _listening(port), 60, "moto_server")
        client = s3_client(f"http://127.0.0.1:{port}")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        proxy.up()
        yield proxy
    finally:
        proxy.down()
        _terminate(proc)


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                        region_name="us-east-1")  # fmt: skip


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Worker:
    """`svdiff-service worker --queues <queues>` (Celery's prefork pool, one child: docker-compose.yml's
    command) in a session of its own, so that the whole worker (master and child) can be killed at once."""

    def __init__(self, name: str, queues: str, env: dict[str, str], log_dir: Path, *extra: str) -> None:
        self.name, self.queues, self.env, self.log_dir, self.extra = name, queues, env, log_dir, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        cmd = [str(VENV_BIN / "svdiff-service"), "worker", "--queues", self.queues, *self.extra]
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        self.starts += 1
        with open(self.log_dir / f"worker-{self.name}.log", "ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[int]:
        """The pool's processes (the ones that run tasks)."""
        if self.proc is None:
            return []
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def kill_all(self) -> None:
        """SIGKILL of the whole worker (the machine or container gone)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # any pool child left behind
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc = None


def wait_ports_free(*ports: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_listening(p) for p in ports):
        time.sleep(0.1)
