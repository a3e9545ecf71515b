"""`make bench-faults`' accounting on synthetic records: lost, duplicated, failed, recovery, and its last line."""

from __future__ import annotations

from bench.faults import accounting
from bench.faults.__main__ import faults_of
from bench.faults.accounting import Event, Fault, JobRow, Output, Submission, judge, recovered_at, settled_at


def sub(tag: int, kind: str = "generation", job_id: str | None = None, images: int = 2) -> Submission:
    return Submission(tag=tag, kind=kind, submitted_at=0.0, num_images=images, job_id=job_id or f"j{tag}")


def row(tag: int, kind: str = "generation", status: str = "succeeded", **kw: object) -> JobRow:
    values: dict[str, object] = {"attempts": 1, "image_rows": 2 if kind == "generation" else 0,
                                 "checkpoint_rows": 1 if kind == "training" else 0} | kw  # fmt: skip
    return JobRow(id=str(values.pop("id", f"j{tag}")), kind=kind, tag=tag, status=status, **values)  # type: ignore[arg-type]


def out(job: str, key: str, *etags: str) -> Output:
    return Output(job_id=job, key=key, etags=list(etags or ("e1",)))


def test_a_clean_run() -> None:
    subs = [sub(1), sub(2, "training", images=1)]
    jobs = [row(1), row(2, "training", attempts=2)]
    outputs = [out("j1", "g/j1/0.png"), out("j1", "g/j1/1.png"), out("j2", "c/shifts", "e", "e")]
    verdict = judge(subs, jobs, outputs)
    assert (verdict.lost, verdict.duplicated, verdict.failed) == ([], [], [])
    assert verdict.rewrites == 1 and verdict.max_attempts == 2  # the same bytes written twice: a rewrite


def test_lost_jobs() -> None:
    verdict = judge([sub(1), sub(2), sub(3)], [row(1, status="running"), row(3, status="queued")], [])
    assert [name for name, _ in verdict.lost] == ["generation j1", "generation #2", "generation j3"]
    assert "still running" in verdict.lost[0][1] and "not in the database" in verdict.lost[1][1]


def test_duplicates() -> None:
    subs = [sub(1), sub(2), sub(3), sub(4, "training", images=1), sub(5)]
    jobs = [row(1), row(1, id="j1b"), row(2, image_rows=4), row(3), row(4, "training", checkpoint_rows=2), row(5),
            row(99, id="stray")]  # fmt: skip
    outputs = [out("j3", "g/j3/0.png", "a", "b"), out("j5", "g/j5/0.png"), out("j5", "g/j5/1.png"),
               out("j5", "g/j5/2.png")]  # fmt: skip
    verdict = judge(subs, jobs, outputs)
    whys = dict(verdict.duplicated)
    assert "2 jobs for one submission" in whys["generation #1"]
    assert whys["generation j2"] == "4 image rows for 2 images"
    assert "2 different contents" in whys["generation j3"]
    assert whys["training j4"] == "2 checkpoint rows"
    assert whys["generation j5"].startswith("3 output objects for 2")
    assert "no submission asked for" in whys["generation stray"]
    assert verdict.lost == [] and verdict.failed == []


def test_failures_say_why() -> None:
    refused = sub(2)
    refused.refused, refused.job_id = "503 the database is unavailable", None
    verdict = judge([sub(1), refused], [row(1, status="failed", error_type="WorkerLost", error_detail="3 spent")], [])
    assert verdict.failed == [("generation j1", "failed: WorkerLost: 3 spent"),
                              ("generation #2", "create never accepted: 503 the database is unavailable")]  # fmt: skip


def test_recovery_by_kind_of_fault() -> None:
    events = [Event(9.0, "claimed", "x"), Event(11.0, "succeeded", "y"), Event(12.0, "requeued", "k"),
              Event(13.0, "claimed", "z"), Event(14.0, "accepted", "n"), Event(20.0, "claimed", "k")]  # fmt: skip
    kill = Fault("kill-training-task", "kill", at=10.0, restored_at=10.0, target="k", target_attempts=1)
    assert recovered_at(kill, events) == 12.0  # taken back by the reconciler, before it ran again
    late = [Event(10.2, "claimed", "k", attempts=1), Event(25.0, "claimed", "k", attempts=2)]
    assert recovered_at(kill, late) == 25.0  # the killed attempt's own claim, seen late, is not a takeover
    assert recovered_at(Fault("redis-flushall", "redis", 10.0, 10.0), events) == 13.0  # claims only
    assert recovered_at(Fault("postgres-restart", "postgres", 10.0, 10.5), events) == 11.0
    assert recovered_at(Fault("s3-down-30s", "s3", 5.0, 10.0), events) == 11.0  # after the outage ended
    assert recovered_at(Fault("api-restart", "api", 10.0, 10.0), events) == 14.0
    assert recovered_at(Fault("s3-down-30s", "s3", 5.0, 30.0), events) is None


def test_table_and_last_line() -> None:
    faults = [Fault("redis-flushall", "redis", at=110.0, restored_at=110.0, affected=["a", "b"]),
              Fault("api-restart", "api", at=200.0, restored_at=203.0),
              Fault("s3-down-30s", "s3", at=210.0, restored_at=240.0),
              Fault("kill-training-task", "kill", at=250.0, restored_at=251.0)]  # fmt: skip
    faults[0].recovered_at = 112.5
    faults[2].recovered_at = 245.0  # 5 s after the outage's end
    faults[3].recovered_at = 262.0  # 12 s after the kill
    verdict = judge([sub(1)], [row(1, status="failed", error_type="E", error_detail="d")], [])
    assert accounting.last_line(7, faults, verdict, end=260.0) == (
        "faults: jobs=7 injected=4 lost=0 duplicated=0 failed=1 max_recovery_s=57.0"  # never recovered: until the end
    )
    lines = accounting.table(faults, start=100.0).splitlines()
    assert lines[2] == "| redis-flushall | 10 | 0.0 | 2.5 | a job claimed from the broker | 2 | never |"
    assert lines[3].startswith("| api-restart | 100 | 3.0 | never |")
    assert lines[4].startswith("| s3-down-30s | 110 | 30.0 | 5.0 |")
    assert lines[5].startswith("| kill-training-task | 150 | 1.0 | 12.0 |")


def test_settled_when_every_job_in_flight_ended() -> None:
    fault = Fault("redis-flushall", "redis", at=10.0, restored_at=10.0, affected=["a", "b"])
    events = [Event(5.0, "succeeded", "c"), Event(12.0, "claimed", "a"), Event(14.0, "succeeded", "a")]
    assert settled_at(fault, events) is None  # b never ended
    events.append(Event(31.0, "failed", "b"))
    assert settled_at(fault, events) == 31.0
    assert settled_at(Fault("api-restart", "api", 1.0, 2.0), []) == 1.0  # nothing in flight
    # seen in flight, but it had ended (its finish time is the database's) just before the injection
    assert settled_at(Fault("api-restart", "api", 10.0, 12.0, affected=["c"]), events) == 10.0


def test_fault_selection() -> None:
    assert faults_of("2") == ["kill-training-task", "redis-flushall"]
    assert faults_of("api-restart, s3-down-30s") == ["api-restart", "s3-down-30s"]
