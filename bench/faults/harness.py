"""The run: the stack on loopback, a stream of trainings and generations through the API, the faults injected one
after another while jobs flow, then the accounting (`bench.faults.accounting`) from the database and the bucket."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.api import stack
from bench.faults import services
from bench.faults.accounting import TERMINAL, Event, Fault, JobRow, Output, Submission, settled_at

ROOT = stack.ROOT
PHOTO_SETS = ("green-dotted-diamond", "red-striped-cross", "yellow-striped-circle")
CLASS_WORDS = {"green-dotted-diamond": "diamond", "red-striped-cross": "cross", "yellow-striped-circle": "circle"}
GENERATION_TAG0 = 1_000_000  # generation seeds; a training's tag is its step count less the base

# The faults, in the order they are injected; `--faults` takes the first N or names some.
SCHEDULE = (
    "kill-training-task", "redis-flushall", "kill-inference-worker", "postgres-restart", "kill-training-worker",
    "s3-down-30s", "api-restart", "redis-restart", "kill-inference-task", "kill-training-task",
)  # fmt: skip
KIND_OF_FAULT = {
    "kill-training-task": "kill", "kill-training-worker": "kill", "kill-inference-task": "kill",
    "kill-inference-worker": "kill", "redis-flushall": "redis", "redis-restart": "redis",
    "postgres-restart": "postgres", "s3-down-30s": "s3", "api-restart": "api",
}  # fmt: skip


@dataclass
class Config:
    faults: list[str]
    training_steps: int = 300
    generation_steps: int = 40
    num_images: int = 2
    max_jobs: int = 400
    backlog_training: int = 2  # trainings queued or running that the stream keeps
    backlog_inference: int = 3
    heartbeat_timeout_s: int = 10
    reconcile_every_s: float = 5.0
    requeue_after_s: int = 10
    s3_outage_s: float = 30.0
    recovery_timeout_s: float = 240.0
    drain_timeout_s: float = 600.0
    settle_s: float = 8.0
    users: int = 3


def service_env(cfg: Config, pg: services.Postgres, redis: services.Redis, s3: services.TcpProxy, port: int,
                admin_key: str, data_dir: Path) -> dict[str, str]:  # fmt: skip
    """bench.api's production settings on the private servers, with the bundled base model, small recipes and
    the reconciler's clocks shrunk from minutes to seconds (the same rules, a faster run)."""
    from basemodel import BASE_MODEL_PATH

    env = stack.production_env(pg.url("svdiff"), "", f"http://127.0.0.1:{s3.port}", admin_key, port)
    env.update({
        "SVDIFF_BROKER_URL": redis.url,
        "SVDIFF_BROKER_TRANSPORT_OPTIONS": json.dumps({}),
        "SVDIFF_S3_BUCKET": services.BUCKET,
        "SVDIFF_DATA_DIR": str(data_dir),
        "SVDIFF_BASE_MODEL": str(BASE_MODEL_PATH),
        "SVDIFF_SVD_CACHE_DIR": str(data_dir / "svd-cache"),
        "SVDIFF_MIN_PHOTO_SIDE": "64",  # the bundled model's photos are 64x64
        "SVDIFF_CLASS_IMAGES": "2",
        "SVDIFF_CLASS_IMAGE_STEPS": "2",
        "SVDIFF_CHECKPOINT_EVERY_STEPS": "25",
        "SVDIFF_PROGRESS_INTERVAL_SECONDS": "0.5",
        "SVDIFF_HEARTBEAT_TIMEOUT_SECONDS": str(cfg.heartbeat_timeout_s),
        "SVDIFF_REQUEUE_AFTER_SECONDS": str(cfg.requeue_after_s),
        "SVDIFF_RECONCILE_EVERY_SECONDS": str(cfg.reconcile_every_s),
        "SVDIFF_TRAINING_TIME_LIMIT_SECONDS": "900",
        "SVDIFF_INFERENCE_TIME_LIMIT_SECONDS": "300",
        "SVDIFF_BROKER_VISIBILITY_TIMEOUT": "1000",  # above the longest hard limit, as in production
        "SVDIFF_MAX_ACTIVE_JOBS_PER_USER": json.dumps({"training": 100, "inference": 1000}),
        # one torch thread per worker process: the machine's other core is someone else's
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    })  # fmt: skip
    return env


WORKER_POOL = {"SVDIFF_DB_POOL_SIZE": "1", "SVDIFF_DB_MAX_OVERFLOW": "2"}  # docker-compose.yml's x-worker-env


class Monitor(threading.Thread):
    """Reads the jobs table twice a second (its own connection; a database that is down is waited for) and turns
    what changed into events: a job claimed (its attempts went up), succeeded or failed."""

    def __init__(self, db_url: str) -> None:
        super().__init__(name="monitor", daemon=True)
        self.dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
        self.jobs: dict[str, dict[str, Any]] = {}
        self.checkpoints: dict[str, list[str]] = {}  # user id -> checkpoint ids
        self.events: list[Event] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.errors = 0

    def run(self) -> None:
        import psycopg

        conn: Any = None
        while not self.stop.wait(0.5):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
                self._poll(conn)
            except Exception:
                self.errors += 1
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _poll(self, conn: Any) -> None:
        rows = conn.execute(
            "SELECT id, kind, queue, user_id, status, attempts, progress_step, progress_total, worker_id, "
            "EXTRACT(EPOCH FROM finished_at) FROM jobs"
        ).fetchall()
        checkpoints = conn.execute("SELECT user_id, id FROM checkpoints ORDER BY created_at").fetchall()
        now = time.time()
        with self.lock:
            for job_id, kind, queue, user, status, attempts, step, total, worker, finished in rows:
                old = self.jobs.get(job_id)
                if attempts > 0 and (old is None or attempts > old["attempts"]):
                    self.events.append(Event(now, "claimed", job_id, attempts))
                if status == "queued" and old is not None and old["status"] == "running":
                    self.events.append(Event(now, "requeued", job_id))  # the reconciler took a lost job back
                if status in TERMINAL and (old is None or old["status"] not in TERMINAL):
                    what = "succeeded" if status == "succeeded" else "failed"
                    self.events.append(Event(float(finished) if finished else now, what, job_id))
                self.jobs[job_id] = dict(kind=kind, queue=queue, user=user, status=status, attempts=attempts,
                                         step=step, total=total, worker=worker)  # fmt: skip
            self.checkpoints = {}
            for user, checkpoint in checkpoints:
                self.checkpoints.setdefault(user, []).append(checkpoint)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {k: dict(v) for k, v in self.jobs.items()}

    def active(self, queue: str) -> int:
        with self.lock:
            return sum(1 for j in self.jobs.values() if j["queue"] == queue and j["status"] not in TERMINAL)


@dataclass
class Client:
    """The bench's user side: accounts, subjects, and creates retried under one Idempotency-Key until accepted."""

    url: str
    admin_key: str
    users: list[dict[str, str]] = field(default_factory=list)  # {id, key, subject}
    server_errors: list[str] = field(default_factory=list)  # every 5xx but a 503, with its body
    unavailable: int = 0  # 503s and refused connections while something was down

    def call(self, method: str, path: str, key: str, deadline_s: float = 180, **kwargs: Any) -> httpx.Response:
        """The request, retried (same headers, so the same Idempotency-Key) while the API is unreachable or
        answers 503 (a dependency is down), until `deadline_s`."""
        deadline = time.monotonic() + deadline_s
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        while True:
            response: httpx.Response | None = None
            try:
                response = httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)
            except httpx.HTTPError as exc:
                self.unavailable += 1
                why = type(exc).__name__
            else:
                if response.status_code < 500:
                    return response
                why = f"{response.status_code} {response.text[:300]}"
                if response.status_code == 503:
                    self.unavailable += 1
                else:
                    self.server_errors.append(f"{method} {path}: {why}")
            if time.monotonic() > deadline:
                if response is not None:
                    return response
                raise RuntimeError(f"{method} {path}: {why}")
            time.sleep(1.0)

    def setup(self, users: int) -> None:
        for n in range(users):
            made = self.call("POST", "/v1/users", self.admin_key, json={"name": f"faults-{n}", "role": "user"})
            made.raise_for_status()
            user = made.json()
            folder = ROOT / "examples" / PHOTO_SETS[n % len(PHOTO_SETS)]
            files = [("files", (p.name, p.read_bytes(), "image/png")) for p in sorted(folder.glob("*.png"))]
            subject = self.call("POST", "/v1/subjects", user["api_key"], files=files,
                                data={"name": folder.name, "class_word": CLASS_WORDS[folder.name]})  # fmt: skip
            subject.raise_for_status()
            self.users.append({"id": user["id"], "key": user["api_key"], "subject": subject.json()["id"],
                               "token": subject.json()["token"], "class_word": CLASS_WORDS[folder.name]})  # fmt: skip


class Stream(threading.Thread):
    """Keeps `backlog_*` jobs queued or running on each queue (so that a fault always finds work in flight)
    until stopped or `max_jobs` were submitted. Generations use a checkpoint of their user's when one exists."""

    def __init__(self, cfg: Config, client: Client, monitor: Monitor, events: list[Event]) -> None:
        super().__init__(name="stream", daemon=True)
        self.cfg, self.client, self.monitor, self.events = cfg, client, monitor, events
        self.submissions: list[Submission] = []
        self.stop = threading.Event()
        self.pending = {"training": 0, "inference": 0}
        self.lock = threading.Lock()
        self.trainings = 0
        self.generations = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set() and len(self.submissions) < self.cfg.max_jobs:
                if self.monitor.active("training") + self.pending["training"] < self.cfg.backlog_training:
                    self._submit_training()
                elif self.monitor.active("inference") + self.pending["inference"] < self.cfg.backlog_inference:
                    self._submit_generation()
                else:
                    self.stop.wait(0.5)
        except BaseException as exc:  # reported by the harness
            self.error = exc

    def _user(self) -> dict[str, str]:
        return self.client.users[len(self.submissions) % len(self.client.users)]

    def _submit_training(self) -> None:
        tag = self.trainings
        self.trainings += 1
        user = self._user()
        body = {"subject_ids": [user["subject"]], "steps": self.cfg.training_steps + tag}
        self._submit("training", "/v1/trainings", user, body, tag, 1)

    def _submit_generation(self) -> None:
        tag = GENERATION_TAG0 + self.generations
        self.generations += 1
        user = self._user()
        with self.monitor.lock:
            owned = list(self.monitor.checkpoints.get(user["id"], []))
        body: dict[str, Any] = {
            "prompt": f"a photo of a {user['token']} {user['class_word']} on a water background",
            "num_images": self.cfg.num_images,
            "seed": tag,
            "steps": self.cfg.generation_steps,
        }
        if owned:
            body["checkpoints"] = [{"id": owned[self.generations % len(owned)]}]
        self._submit("generation", "/v1/generations", user, body, tag, self.cfg.num_images)

    def _submit(self, kind: str, path: str, user: dict[str, str], body: dict[str, Any], tag: int,
                images: int) -> None:  # fmt: skip
        queue = "training" if kind == "training" else "inference"
        sub = Submission(tag=tag, kind=kind, submitted_at=time.time(), num_images=images)
        self.submissions.append(sub)
        self.pending[queue] += 1
        try:
            response = self.client.call("POST", path, user["key"], json=body,
                                        headers={"Idempotency-Key": str(uuid.uuid4())})  # fmt: skip
            if response.status_code == 202:
                sub.job_id = response.json()["id"]
                self.events.append(Event(time.time(), "accepted", sub.job_id))
                self._wait_seen(sub.job_id)
            else:
                sub.refused = f"{response.status_code} {response.text[:300]}"
        except RuntimeError as exc:
            sub.refused = str(exc)
        finally:
            self.pending[queue] -= 1

    def _wait_seen(self, job_id: str, timeout: float = 30) -> None:
        """Until the monitor has read the new job (so the backlog count includes it)."""
        deadline = time.monotonic() + timeout
        while job_id not in self.monitor.snapshot() and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.2)


class Harness:
    """Everything a run starts, torn down in reverse order on the way out, errors and Ctrl-C included."""

    def __init__(self, cfg: Config, folder: Path, say: Callable[[str], None]) -> None:
        self.cfg, self.folder, self.say = cfg, folder, say
        self.exit = contextlib.ExitStack()
        self.api_exit: contextlib.ExitStack | None = None
        self.workers: dict[str, services.Worker] = {}
        self.events: list[Event] = []
        self.faults: list[Fault] = []

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                worker.stop()
        if self.api_exit is not None:
            with contextlib.suppress(Exception):
                self.api_exit.close()
        self.exit.close()

    # --- the stack -------------------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        self.pg = self.exit.enter_context(services.postgres(self.folder / "pg"))
        self.redis = self.exit.enter_context(services.redis_server(self.folder))
        self.s3 = self.exit.enter_context(services.s3(self.folder))
        self.port = stack.free_port()
        self.admin_key = "svd_" + secrets.token_urlsafe(32)
        self.env = service_env(cfg, self.pg, self.redis, self.s3, self.port, self.admin_key, self.folder / "data")
        self.url = f"http://127.0.0.1:{self.port}"
        self.say(f"bench-faults: postgres :{self.pg.port}, redis :{self.redis.port}, s3 proxy :{self.s3.port}, "
                 f"API {self.url}, logs in {self.folder}")  # fmt: skip
        self.start_api()
        worker_env = {**self.env, **WORKER_POOL}
        self.workers = {
            "training": services.Worker("training", "training", worker_env, self.folder),
            "inference": services.Worker("inference", "inference", worker_env, self.folder),
            "cpu": services.Worker("cpu", "cpu,webhooks", worker_env, self.folder, "--concurrency", "2", "--beat"),
        }
        for worker in self.workers.values():
            worker.start()
        self.monitor = Monitor(self.env["SVDIFF_DATABASE_URL"])
        self.monitor.start()
        self.exit.callback(self._stop_monitor)

    def _stop_monitor(self) -> None:
        self.monitor.stop.set()
        self.monitor.join(timeout=5)

    def start_api(self) -> None:
        self.api_exit = contextlib.ExitStack()
        self.api_exit.enter_context(stack.api_server(self.env, self.port, 2, self.folder / "api.log"))

    def stop_api(self) -> None:
        if self.api_exit is not None:
            self.api_exit.close()
            self.api_exit = None

    # --- the run ---------------------------------------------------------------------------------------------
    def run(self) -> tuple[list[Submission], float, float]:
        """Warm-up (a training and a generation succeed), the faults, then the drain. Returns the submissions
        and the run's start and end (epoch seconds)."""
        start = time.time()
        self.client = Client(self.url, self.admin_key)
        self.client.setup(self.cfg.users)
        self.stream = Stream(self.cfg, self.client, self.monitor, self.events)
        self.stream.start()
        self._wait(lambda: self._succeeded("training") >= 1 and self._succeeded("generation") >= 1, 600,
                   "the first training and generation to succeed")  # fmt: skip
        self.say(f"bench-faults: warm after {time.time() - start:.0f} s")
        for name in self.cfg.faults:
            self._alive()
            fault = self.inject(name)
            if fault is None:
                continue
            self.faults.append(fault)
            self._wait_recovery(fault)
            time.sleep(self.cfg.settle_s)
        self.stream.stop.set()
        self.stream.join(timeout=200)
        self.say(f"bench-faults: {len(self.stream.submissions)} jobs submitted; draining")
        self._wait(self._drained, self.cfg.drain_timeout_s, "every job to end", fail=False)
        time.sleep(1.0)  # the monitor's last read
        for fault in self.faults:
            fault.recovered_at = _recovered(fault, self.events + self.monitor.events)
            fault.settled_at = settled_at(fault, self.monitor.events)
        return self.stream.submissions, start, time.time()

    def _alive(self) -> None:
        if self.stream.error is not None:
            raise RuntimeError(f"the job stream stopped: {self.stream.error!r}")
        for name, worker in self.workers.items():
            if not worker.alive():
                self.say(f"bench-faults: worker {name} exited on its own (code {worker.proc and worker.proc.poll()}); "
                         "restarting it, as docker-compose's restart policy would")  # fmt: skip
                worker.start()

    def _succeeded(self, kind: str) -> int:
        return sum(1 for j in self.monitor.snapshot().values() if j["kind"] == kind and j["status"] == "succeeded")

    def _drained(self) -> bool:
        jobs = self.monitor.snapshot()
        return all(s.job_id is None or jobs.get(s.job_id, {}).get("status") in TERMINAL
                   for s in self.stream.submissions)  # fmt: skip

    def _wait(self, check: Callable[[], bool], timeout: float, what: str, fail: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            self._alive()
            time.sleep(0.5)
        if fail:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        self.say(f"bench-faults: timed out after {timeout:.0f} s waiting for {what}")
        return False

    def _wait_recovery(self, fault: Fault) -> None:
        def recovered() -> bool:
            return _recovered(fault, self.events + self.monitor.events) is not None

        if self._wait(recovered, self.cfg.recovery_timeout_s, f"recovery from {fault.name}", fail=False):
            fault.recovered_at = _recovered(fault, self.events + self.monitor.events)
            self.say(f"bench-faults: {fault.name}: recovered after {fault.recovery_s or 0:.1f} s")

    def _mid_task(self, worker: services.Worker, queue: str, min_fraction: float) -> tuple[int, Any] | None:
        """The worker's pool process and the job it runs now, read from the database at this moment (a job's
        `worker_id` names the process: host:pid:thread), past `min_fraction` of its steps and not at its last, and
        not killed before: a job killed MAX_JOB_ATTEMPTS times fails by design (a killed training resumes at the
        head of its queue, so the next kill would find it again: a first run killed one three times)."""
        import psycopg

        dsn = self.env["SVDIFF_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        for pid in worker.children():
            try:
                with psycopg.connect(dsn, connect_timeout=3) as conn:
                    row = conn.execute(
                        "SELECT id, attempts, progress_step, progress_total FROM jobs WHERE queue = %s AND "
                        "status = 'running' AND worker_id LIKE %s AND progress_step >= 1 AND "
                        "progress_step >= %s * progress_total AND progress_step < progress_total AND "
                        "NOT (id = ANY(%s))",
                        (queue, f"%:{pid}:%", min_fraction, [f.target for f in self.faults if f.target]),
                    ).fetchone()
            except psycopg.Error:
                return None
            if row is not None:
                return pid, row
        return None

    def inject(self, name: str) -> Fault | None:
        kind = KIND_OF_FAULT[name]
        found: list[tuple[int, Any]] = []
        if kind == "kill":
            queue = "training" if "training" in name else "inference"
            fraction = 0.2 if queue == "training" else 0.0

            def mid_task() -> bool:
                hit = self._mid_task(self.workers[queue], queue, fraction)
                if hit:
                    found.append(hit)
                return hit is not None

            if not self._wait(mid_task, 240, f"a {queue} job mid-task", fail=False):
                self.say(f"bench-faults: {name}: no {queue} job ran; not injected")
                return None
        jobs = self.monitor.snapshot()
        affected = [j for j, job in jobs.items() if job["status"] in ("queued", "running")]
        at = time.time()
        fault = Fault(name=name, kind=kind, at=at, restored_at=at, affected=affected)
        detail = ""
        if found:
            pid, (job_id, attempts, step, total) = found[-1]
            fault.target, fault.target_attempts = job_id, attempts
            detail = f" (pid {pid}, job {job_id} at step {step}/{total})"
        self._do(name, fault, found[-1][0] if found else None)
        self.say(f"bench-faults: injected {name}{detail}; {len(affected)} jobs in flight")
        return fault

    def _do(self, name: str, fault: Fault, pid: int | None) -> None:
        if name in ("kill-training-task", "kill-inference-task"):
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # the pool process running the job; the worker's master forks another
        elif name in ("kill-training-worker", "kill-inference-worker"):
            worker = self.workers["training" if "training" in name else "inference"]
            worker.kill_all()
            time.sleep(1.0)
            worker.start()  # docker-compose's `restart: unless-stopped`
        elif name == "redis-flushall":
            self.redis.flushall()
        elif name == "redis-restart":
            self.redis.kill()
            time.sleep(2.0)
            self.redis.start()  # no persistence: it comes back empty
        elif name == "postgres-restart":
            self.pg.restart("immediate")
        elif name == "s3-down-30s":
            self.s3.down()
            time.sleep(self.cfg.s3_outage_s)
            self.s3.up()
        elif name == "api-restart":
            self.stop_api()
            self.start_api()
        else:
            raise ValueError(name)
        fault.restored_at = time.time()

    # --- the accounting --------------------------------------------------------------------------------------
    def collect(self) -> tuple[list[JobRow], list[Output]]:
        """Every job with its results, and every version of every object under the jobs' output prefixes."""
        import psycopg

        from core import keys
        from worker.tasks.training import checkpoint_id_for

        dsn = self.env["SVDIFF_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT j.id, j.kind, j.user_id, j.status, j.attempts, j.error_type, j.error_detail, j.params, "
                "(SELECT count(*) FROM job_images i WHERE i.job_id = j.id), "
                "(SELECT count(*) FROM checkpoints c WHERE c.training_id = j.id) FROM jobs j"
            ).fetchall()
        jobs: list[JobRow] = []
        prefixes: dict[str, str] = {}
        for job_id, kind, user, status, attempts, etype, detail, params, images, checkpoints in rows:
            tag = int(params["steps"]) - self.cfg.training_steps if kind == "training" else int(params["seed"])
            jobs.append(JobRow(job_id, kind, tag, status, attempts, etype, detail, images, checkpoints))
            if kind == "training":
                prefixes[keys.checkpoint_prefix(user, checkpoint_id_for(job_id))] = job_id
            else:
                prefixes[keys.job_prefix(user, kind, job_id)] = job_id
        client = services.s3_client(self.s3.direct)
        versions: dict[str, list[str]] = {}
        for page in client.get_paginator("list_object_versions").paginate(Bucket=services.BUCKET, Prefix="users/"):
            for version in page.get("Versions", []):
                versions.setdefault(version["Key"], []).append(version["ETag"])
        outputs = []
        for key, etags in versions.items():
            prefix = key.rsplit("/", 1)[0] + "/"
            if prefix in prefixes and not key.endswith(".pending") and "/lora-" not in key:
                outputs.append(Output(prefixes[prefix], key, etags))
        return jobs, outputs


def _recovered(fault: Fault, events: list[Event]) -> float | None:
    from bench.faults.accounting import recovered_at

    return recovered_at(fault, events)


@contextlib.contextmanager
def harness(cfg: Config, folder: Path, say: Callable[[str], None]) -> Iterator[Harness]:
    with Harness(cfg, folder, say) as h:
        h.start()
        yield h
