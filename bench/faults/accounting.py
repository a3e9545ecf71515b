"""What `make bench-faults` counts, on plain records (no database, no processes): which submissions were lost,
which jobs ran to two outputs, which failed and why, and how long each fault took to recover from.

- lost: a submission the API accepted whose job is not in the database, or that never reached a terminal state;
- duplicated: one submission stored as two jobs, or one job with more results than it asked for: two checkpoint
  rows, more image rows than images, more output objects than that in the bucket, or an output object written
  with two different contents (the bucket is versioned: a job's work redone to the same bytes after a kill is a
  rewrite, counted apart, not a second output);
- failed: a job that ended failed or canceled, with its error, or a create the API never accepted;
- recovery: until the system made progress again, by the fault's own measure (`RECOVERY`): from the kill for a
  killed worker, from the moment the broken part was back for the others (an outage's own length is apart).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

TERMINAL = ("succeeded", "failed", "canceled")

# What "progress again" is for each kind of fault: the killed job taken over (back in its queue, or claimed by a
# new attempt, or ended); a job
# claimed from a message the broker delivered; any write of a job to the database; a job's outputs stored and the
# job succeeded; a create accepted by the API.
RECOVERY = {
    "kill": "killed job taken over (requeued or claimed)",
    "redis": "a job claimed from the broker",
    "postgres": "a job claimed or finished",
    "s3": "a job succeeded (outputs stored)",
    "api": "a create accepted",
}


TAKEN_OVER = ("requeued", "claimed", *TERMINAL)


@dataclass
class Submission:
    """One create the bench sent (retried under one Idempotency-Key until accepted): `tag` is the seed it asked
    for, unique per submission, by which its job is found in the database."""

    tag: int
    kind: str  # training | generation
    submitted_at: float
    num_images: int = 1
    job_id: str | None = None
    refused: str | None = None  # why the API never accepted it


@dataclass
class JobRow:
    """A job as the database holds it at the end, with its results."""

    id: str
    kind: str
    tag: int
    status: str
    attempts: int
    error_type: str | None = None
    error_detail: str | None = None
    image_rows: int = 0
    checkpoint_rows: int = 0


@dataclass
class Output:
    """One object under a job's output prefix, with the content hash (ETag) of each version written."""

    job_id: str
    key: str
    etags: list[str]


@dataclass
class Event:
    """A change the bench's monitor saw: a job `claimed` (a new attempt), `requeued` (running, then queued again:
    taken back from a lost worker), `succeeded` or `failed`; or a create `accepted` by the API."""

    t: float
    what: str
    job_id: str | None = None
    attempts: int = 0  # a claim's attempt number


@dataclass
class Fault:
    name: str
    kind: str  # a key of RECOVERY
    at: float  # injected
    restored_at: float  # the broken part back (equal to `at` for a kill: the worker is restarted at once)
    target: str | None = None  # the killed job
    target_attempts: int = 0  # its attempts when killed
    affected: list[str] = field(default_factory=list)  # jobs running or queued at injection
    recovered_at: float | None = None
    settled_at: float | None = None  # every job in flight at injection ended (`settled_at`)

    @property
    def down_s(self) -> float:
        return self.restored_at - self.at

    @property
    def recovery_s(self) -> float | None:
        """From the injection for a kill (the reconciler's takeover does not wait for the worker's restart), else
        from the moment the broken part was back (an outage's own length is `down_s`, not recovery)."""
        if self.recovered_at is None:
            return None
        return self.recovered_at - (self.at if self.kind == "kill" else self.restored_at)


def recovered_at(fault: Fault, events: Sequence[Event]) -> float | None:
    """When the system made progress again after `fault`, by its kind's measure (RECOVERY); None if it never did."""
    after_restore = {"redis": ("claimed",), "postgres": ("claimed", *TERMINAL), "s3": ("succeeded",),
                     "api": ("accepted",)}  # fmt: skip
    for event in sorted(events, key=lambda e: e.t):
        if fault.kind == "kill":
            # a claim seen only now may be the killed attempt's own (the monitor reads twice a second)
            again = event.what != "claimed" or event.attempts > fault.target_attempts
            if event.t >= fault.at and event.job_id == fault.target and event.what in TAKEN_OVER and again:
                return event.t
        elif event.t >= fault.restored_at and event.what in after_restore[fault.kind]:
            return event.t
    return None


def settled_at(fault: Fault, events: Sequence[Event]) -> float | None:
    """When the last of the jobs in flight at the injection (queued or running: their messages, their workers)
    ended; None if one never did."""
    ended: dict[str, float] = {}
    for event in events:  # a job the monitor still saw running may have ended just before the injection
        if event.what in TERMINAL and event.job_id in fault.affected:
            ended[event.job_id] = min(event.t, ended.get(event.job_id, event.t))
    if any(job not in ended for job in fault.affected):
        return None
    return max([fault.at, *ended.values()])


@dataclass
class Verdict:
    lost: list[tuple[str, str]]  # (submission or job, why)
    duplicated: list[tuple[str, str]]
    failed: list[tuple[str, str]]
    rewrites: int  # output objects written more than once with the same bytes
    max_attempts: int


def judge(submissions: Sequence[Submission], jobs: Sequence[JobRow], outputs: Iterable[Output]) -> Verdict:
    by_tag: dict[int, list[JobRow]] = defaultdict(list)
    for job in jobs:
        by_tag[job.tag].append(job)
    out_by_job: dict[str, list[Output]] = defaultdict(list)
    for output in outputs:
        out_by_job[output.job_id].append(output)
    lost: list[tuple[str, str]] = []
    duplicated: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    rewrites = 0
    tags = {s.tag for s in submissions}
    for sub in submissions:
        name = f"{sub.kind} #{sub.tag}"
        rows = by_tag.get(sub.tag, [])
        if sub.refused is not None and not rows:
            failed.append((name, f"create never accepted: {sub.refused}"))
            continue
        if not rows:
            lost.append((name, f"accepted as {sub.job_id} but not in the database"))
            continue
        if len(rows) > 1:
            duplicated.append((name, f"{len(rows)} jobs for one submission: {', '.join(r.id for r in rows)}"))
        for row in rows:
            label = f"{row.kind} {row.id}"
            if row.status not in TERMINAL:
                lost.append((label, f"still {row.status} at the end (attempts {row.attempts})"))
            elif row.status != "succeeded":
                failed.append((label, f"{row.status}: {row.error_type}: {row.error_detail}"))
            why = _two_outputs(row, sub.num_images, out_by_job.get(row.id, []))
            if why:
                duplicated.append((label, why))
            rewrites += sum(1 for o in out_by_job.get(row.id, []) if len(o.etags) > 1 and len(set(o.etags)) == 1)
    for tag, rows in by_tag.items():
        if tag not in tags:
            duplicated.extend((f"{r.kind} {r.id}", f"a job no submission asked for (seed {tag})") for r in rows)
    max_attempts = max((job.attempts for job in jobs), default=0)
    return Verdict(lost, duplicated, failed, rewrites, max_attempts)


def _two_outputs(row: JobRow, num_images: int, outputs: list[Output]) -> str | None:
    expected = num_images if row.kind == "generation" else 1
    if row.kind == "training" and row.checkpoint_rows > 1:
        return f"{row.checkpoint_rows} checkpoint rows"
    if row.kind == "generation" and row.image_rows > num_images:
        return f"{row.image_rows} image rows for {num_images} images"
    if len(outputs) > expected:
        return f"{len(outputs)} output objects for {expected}: {', '.join(sorted(o.key for o in outputs))}"
    for output in outputs:
        if len(set(output.etags)) > 1:
            return f"{output.key} written with {len(set(output.etags))} different contents"
    return None


def table(faults: Sequence[Fault], start: float) -> str:
    rows = ["| fault | at s | down s | recovery s | measured by | jobs in flight | all of them ended after s |",
            "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]  # fmt: skip
    for fault in faults:
        recovery = "never" if fault.recovery_s is None else f"{fault.recovery_s:.1f}"
        settled = "never" if fault.settled_at is None else f"{fault.settled_at - fault.at:.1f}"
        rows.append(f"| {fault.name} | {fault.at - start:.0f} | {fault.down_s:.1f} | {recovery} | "
                    f"{RECOVERY[fault.kind]} | {len(fault.affected)} | {settled} |")  # fmt: skip
    return "\n".join(rows)


def last_line(jobs: int, faults: Sequence[Fault], verdict: Verdict, end: float) -> str:
    """`faults: jobs=<n> injected=<k> lost=0 duplicated=0 failed=<f> max_recovery_s=<s>`; a fault never
    recovered from counts until `end` (the run's end)."""
    recoveries = [f.recovery_s if f.recovery_s is not None else end - f.restored_at for f in faults]
    worst = max(recoveries, default=0.0)
    return (f"faults: jobs={jobs} injected={len(faults)} lost={len(verdict.lost)} "
            f"duplicated={len(verdict.duplicated)} failed={len(verdict.failed)} "
            f"max_recovery_s={worst:.1f}")  # fmt: skip
