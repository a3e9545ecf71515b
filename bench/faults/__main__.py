"""`make bench-faults` (`python -m bench.faults`): the service's real processes on loopback (the API under uvicorn
with 2 workers, a training and an inference Celery worker and the CPU worker holding the reconciler's clock, a
private PostgreSQL cluster, a private Redis, moto's S3 server behind a TCP proxy) run a stream of trainings and
generations on the bundled base model while faults are injected, one after another, each once the system has
recovered from the last:

- SIGKILL of a worker mid-task: of the pool process running the task (`*-task`), or of the whole worker, which
  is then started again as docker-compose's restart policy would (`*-worker`);
- Redis emptied (FLUSHALL), and Redis killed and started again empty (no persistence);
- PostgreSQL restarted (`pg_ctl restart -m immediate`: every connection cut, crash recovery);
- the S3 server unreachable for 30 s (the proxy refuses and cuts connections; the objects stay);
- the API restarted (SIGTERM, then started again on its port).

The reconciler's clocks are the service's defaults (heartbeat timeout 20 s, requeue delay 30 s, reconcile interval
60 s); `--heartbeat-timeout`, `--requeue-after` and `--reconcile-every` shorten them for a quicker run.
Prints each failed, lost or duplicated job with its reason, a table of the faults (when, recovery seconds, how
recovery is measured, jobs in flight), and last `faults: jobs=<n> injected=<k> lost=0 duplicated=0 failed=<f>
max_recovery_s=<s>`. Exits 1 when a goal is missed: a job lost or duplicated, a job failed, or a recovery slower
than one reconcile interval plus 30 s."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.faults import accounting
from bench.faults.harness import SCHEDULE, Config, harness
from core.settings import Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--faults", default=",".join(SCHEDULE),
                        help="comma-separated fault names in order, or N for the first N of the default schedule "
                             f"(default: all {len(SCHEDULE)}: %(default)s)")  # fmt: skip
    parser.add_argument("--max-jobs", type=int, default=400, help="stop the stream after this many submissions")
    parser.add_argument("--training-steps", type=int, default=300, help="each training's steps (plus its number)")
    parser.add_argument("--generation-steps", type=int, default=40)
    production = Settings.model_fields  # the service's own defaults, unless shortened for a quicker run
    parser.add_argument("--heartbeat-timeout", type=int, default=production["heartbeat_timeout_seconds"].default,
                        help="SVDIFF_HEARTBEAT_TIMEOUT_SECONDS (default: the service's, %(default)s)")
    parser.add_argument("--requeue-after", type=int, default=production["requeue_after_seconds"].default,
                        help="SVDIFF_REQUEUE_AFTER_SECONDS (default: the service's, %(default)s)")
    parser.add_argument("--reconcile-every", type=float, default=production["reconcile_every_seconds"].default,
                        help="SVDIFF_RECONCILE_EVERY_SECONDS (default: the service's, %(default)s)")
    parser.add_argument("--s3-outage", type=float, default=30.0, help="seconds the S3 server is unreachable")
    parser.add_argument("--log-dir", type=Path, help="keep the logs (services, workers, API) here")
    return parser.parse_args(argv)


def faults_of(spec: str) -> list[str]:
    if spec.isdigit():
        return list(SCHEDULE[: int(spec)])
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCHEDULE]
    if unknown:
        raise SystemExit(f"unknown faults: {', '.join(unknown)} (known: {', '.join(sorted(set(SCHEDULE)))})")
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config(faults=faults_of(args.faults), max_jobs=args.max_jobs, training_steps=args.training_steps,
                 generation_steps=args.generation_steps, heartbeat_timeout_s=args.heartbeat_timeout,
                 requeue_after_s=args.requeue_after, reconcile_every_s=args.reconcile_every,
                 s3_outage_s=args.s3_outage)  # fmt: skip
    # A TERM (a CI timeout, kill) unwinds like an error: every process and folder the run started is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    folder = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    folder.chmod(0o755)  # the private PostgreSQL runs as another account below it
    try:
        with harness(cfg, folder, say) as run:
            submissions, start, end = run.run()
            jobs, outputs = run.collect()
            faults = run.faults
            server_errors, unavailable = run.client.server_errors, run.client.unavailable
        verdict = accounting.judge(submissions, jobs, outputs)
        for title, items in (("lost", verdict.lost), ("duplicated", verdict.duplicated), ("failed", verdict.failed)):
            for name, why in items:
                print(f"{title}: {name}: {why}", flush=True)
        for error in server_errors:
            print(f"server error: {error}", flush=True)
        trainings = sum(1 for s in submissions if s.kind == "training")
        print(f"\n{len(submissions)} jobs ({trainings} trainings, {len(submissions) - trainings} generations) in "
              f"{end - start:.0f} s; {unavailable} requests refused or answered 503 while something was down, "
              f"{len(server_errors)} other 5xx; {verdict.rewrites} outputs rewritten with the same bytes; "
              f"most attempts of a job: {verdict.max_attempts}\n", flush=True)  # fmt: skip
        print(accounting.table(faults, start), flush=True)
        line = accounting.last_line(len(submissions), faults, verdict, end)
        print(f"\n{line}", flush=True)
        bound = cfg.reconcile_every_s + 30
        slow = [f for f in faults if f.recovery_s is None or f.recovery_s > bound]
        ok = not (verdict.lost or verdict.duplicated or verdict.failed or slow or server_errors)
        return 0 if ok else 1
    finally:
        if args.log_dir is not None:
            shutil.copytree(folder, args.log_dir, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("pgdata", "svd-cache", "*.rdb"))  # fmt: skip
        time.sleep(0.2)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
