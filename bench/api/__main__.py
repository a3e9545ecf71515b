"""`make bench-api` (`python -m bench.api`): the API in its production configuration on loopback (PostgreSQL,
Redis, an S3 server, `uvicorn api.app:create_app --factory --workers 2`), no Celery worker, so what is created
stays queued. It measures with wrk, after a short warm-up each:

- job GET and list of 100 with a backlog of 10 queued jobs;
- the backlog grown to `--backlog` queued jobs (bulk SQL, the fair order's counters with it, ANALYZE);
- reads (`GET /v1/subjects`), job GET (the jobs last in the fair order), list of 100, creates
  (`POST /v1/generations`, each with its own Idempotency-Key).

Prints a markdown table and, last, `api: reads_rps=... backlog=<n>`. `--profile-dir` records each measured run's
uvicorn workers with py-spy (`pip install py-spy`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.api import scenarios, stack, wrk
from bench.api.wrk import Request, Result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--backlog", type=int, default=1_000_000, help="queued jobs for the measured runs")
    parser.add_argument("--small-backlog", type=int, default=10, help="queued jobs for the side-by-side runs")
    parser.add_argument("--history", type=int, default=1000, help="finished generations of the list's user")
    parser.add_argument("--seconds", type=int, default=15, help="each measured run")
    parser.add_argument("--warmup", type=int, default=3, help="each warm-up run before it")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--reads-connections", type=int, default=32)
    parser.add_argument("--create-connections", type=int, default=16)
    parser.add_argument("--get-connections", type=int, default=16)
    parser.add_argument("--list-connections", type=int, default=8)
    parser.add_argument("--log-dir", type=Path, help="where the API's log and wrk's outputs go (default: a temp dir)")
    parser.add_argument("--profile-dir", type=Path, help="py-spy profiles (collapsed stacks) of each measured run")
    parser.add_argument("--profile-wall", action="store_true",
                        help="profile wall-clock time (threads waiting included) instead of the GIL holder's CPU")
    return parser.parse_args(argv)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


class Runner:
    """Warm-up, then the measured run, of each scenario; keeps the results and wrk's outputs."""

    def __init__(self, args: argparse.Namespace, api: stack.Stack, log_dir: Path) -> None:
        self.args, self.api, self.log_dir = args, api, log_dir
        self.results: list[Result] = []

    def measure(self, name: str, requests: list[Request], connections: int) -> Result:
        slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
        if self.args.warmup > 0:
            wrk.run(self.api.url, requests, scenario=name, connections=connections, seconds=self.args.warmup,
                    tag=f"warm-{slug}")  # fmt: skip
        profilers = self._profile(slug)
        split: list[int] = []
        sampler = threading.Timer(min(2.0, self.args.seconds / 2), lambda: split.extend(self.connections()))
        sampler.start()
        opened = scenarios.db_sessions(self.api.db_url)
        result, output = wrk.run(self.api.url, requests, scenario=name, connections=connections,
                                 seconds=self.args.seconds, tag=f"run-{slug}")  # fmt: skip
        opened = scenarios.db_sessions(self.api.db_url) - opened - 1  # less the count's own
        sampler.join()
        result = dataclasses.replace(result, per_worker=tuple(split), db_connections_opened=opened)
        for proc in profilers:
            proc.wait(timeout=60)
        (self.log_dir / f"wrk-{slug}.txt").write_text(output)
        print(f"bench-api: {name}: {result.rps:.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
              f"{result.errors} errors", file=sys.stderr, flush=True)  # fmt: skip
        self.results.append(result)
        return result

    def connections(self) -> list[int]:
        """wrk's connections each uvicorn worker holds (the kernel gives a new connection to whichever worker
        accepts first, and a keep-alive connection stays with it)."""
        try:
            import psutil  # from the dev extra's dependencies (peft, accelerate)
        except ImportError:
            return []
        port = int(self.api.url.rsplit(":", 1)[1])
        counts = []
        for pid in self.api.pids[1:]:
            try:
                held = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            counts.append(sum(1 for c in held if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port))
        return counts

    def _profile(self, slug: str) -> list[subprocess.Popen[bytes]]:
        if self.args.profile_dir is None:
            return []
        spy = shutil.which("py-spy", path=os.pathsep.join([str(stack.VENV_BIN), os.environ.get("PATH", "")]))
        if spy is None:
            raise RuntimeError("--profile-dir needs py-spy (pip install py-spy)")
        self.args.profile_dir.mkdir(parents=True, exist_ok=True)
        procs = []
        for pid in self.api.pids[1:]:  # the workers; the master only supervises
            out = self.args.profile_dir / f"{slug}-{pid}.txt"
            mode = "--idle" if self.args.profile_wall else "--gil"
            cmd = [spy, "record", "--pid", str(pid), "--duration", str(self.args.seconds), "--rate", "200", mode,
                   "--format", "raw", "--output", str(out)]  # fmt: skip
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return procs


def table(results: list[Result]) -> str:
    rows = ["| scenario | connections | requests/s | p50 ms | p99 ms | errors | per worker | db connections opened |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    rows += [f"| {r.scenario} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | "
             f"{'/'.join(map(str, r.per_worker)) or '-'} | {r.db_connections_opened} |" for r in results]  # fmt: skip
    return "\n".join(rows)


def last_line(reads: Result, creates: Result, job_get: Result, list100: Result, backlog: int) -> str:
    return (f"api: reads_rps={reads.rps:.0f} reads_p99_ms={reads.p99_ms:.1f} create_rps={creates.rps:.0f} "
            f"create_p99_ms={creates.p99_ms:.1f} job_get_p99_ms={job_get.p99_ms:.1f} "
            f"list100_p99_ms={list100.p99_ms:.1f} backlog={backlog}")  # fmt: skip


def run(args: argparse.Namespace, log_dir: Path, say: Callable[[str], None]) -> str:
    """The whole benchmark; returns the last line. Each scenario's first request is checked first (status, and
    the deepest job's queue position, the page's length...), so that what is measured is what it claims to be."""
    small = min(args.small_backlog, args.backlog)
    page = min(100, args.history + min(4, small))
    with stack.production_stack(args.workers, log_dir) as api:
        say(f"bench-api: API at {api.url} (pids {api.pids}), preparing the data")
        data, next_user = scenarios.prepare(api.db_url, args.history, small)
        runner = Runner(args, api, log_dir)
        gets = scenarios.job_gets(api.db_url, data)
        scenarios.check(api.url, gets[0], 200, status="queued", queue_position=small - 1)
        runner.measure(f"job GET, backlog {small:,}", gets, args.get_connections)
        scenarios.check(api.url, scenarios.list100(data)[0], 200, count=page)
        runner.measure(f"list of 100, backlog {small:,}", scenarios.list100(data), args.list_connections)
        say(f"bench-api: growing the backlog to {args.backlog:,} queued jobs")
        started = time.monotonic()
        backlog = scenarios.grow_backlog(api.db_url, data, next_user, args.backlog)
        say(f"bench-api: {backlog:,} queued jobs after {time.monotonic() - started:.0f} s (VACUUM ANALYZE, CHECKPOINT)")
        scenarios.check(api.url, scenarios.reads(data)[0], 200, count=3)
        reads = runner.measure("reads: GET /v1/subjects", scenarios.reads(data), args.reads_connections)
        gets = scenarios.job_gets(api.db_url, data)
        scenarios.check(api.url, gets[0], 200, status="queued", queue_position=backlog - 1)
        job_get = runner.measure(f"job GET, backlog {backlog:,}", gets, args.get_connections)
        list100 = runner.measure(f"list of 100, backlog {backlog:,}", scenarios.list100(data), args.list_connections)
        scenarios.check(api.url, scenarios.creates(data)[0], 202, status="queued")
        creates = runner.measure("creates: POST /v1/generations", scenarios.creates(data), args.create_connections)
        print(table(runner.results), flush=True)
    return last_line(reads, creates, job_get, list100, backlog)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # A TERM (a CI timeout, kill) unwinds like an error: the database, Redis keys and processes are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="bench-api-") as temp:
        log_dir = args.log_dir or Path(temp)
        log_dir.mkdir(parents=True, exist_ok=True)
        before = uptime()
        line = run(args, log_dir, say)
        print(f"\nload before: {before}\nload after:  {uptime()}\n", flush=True)
        print(line, flush=True)


if __name__ == "__main__":
    main()
