"""Queue positions without counting the queue.

Each round of a queue's fair order (`core.fairness`) keeps two counters (`models.QueueRound`): the jobs that ever
joined it and those that departed from it. A job entering a round takes the next turn in it (`jobs.round_seq`).
Jobs of one round run in turn order, so a queued job's position is what still waits in the rounds before its own,
plus the turns before its own in its round that have not departed yet:

    position = sum(joined - departed over earlier live rounds) + (round_seq - 1 - departed of its round)

A read costs one small query per queue (the live rounds: at most about the per-user cap of them), whatever the
backlog. Exact while jobs leave a round in turn order, as workers take them; a job canceled behind you in your
round counts as gone from before you, so a position can be low by the cancellations behind it in its round
(never past the front, never past the end of the round). The reconciler recounts the rounds from the jobs
(`repair`), which also clears drained rounds, so counters a bulk change left wrong heal within a reconcile
interval.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Insert, Table, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models import QUEUED, Job, QueueRound

JOINED = "positions.joined"  # session.info: {(queue, round): (joined, departed)} as this transaction's turns left them


def _counted_in(session: Session, queue: str, round_: int) -> Insert:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return (
        insert(QueueRound)
        .values(queue=queue, round=round_, joined=1, departed=0)
        .on_conflict_do_update(index_elements=["queue", "round"], set_={"joined": QueueRound.joined + 1})
        .returning(QueueRound.joined, QueueRound.departed)
    )


def join(session: Session, queue: str, round_: int) -> int:
    """Count a new job into a round; returns its turn (1 for the round's first job)."""
    joined, departed = session.execute(_counted_in(session, queue, round_)).one()
    _note(session, queue, round_, int(joined), int(departed))
    return int(joined)


def take_turn(session: Session, job: Job) -> None:
    """A new job, already written with its round, takes the next turn in it: counted into the round and its
    `round_seq` set. This locks the round's counter until the transaction ends, so a create does it last: on
    PostgreSQL in one statement (the counter's upsert as a CTE of the job's update)."""
    if session.get_bind().dialect.name != "postgresql":
        set_committed_value(job, "round_seq", join(session, job.queue, job.fair_round))
        return
    turn = _counted_in(session, job.queue, job.fair_round).returning(QueueRound.round).cte("turn")
    jobs = cast(Table, Job.__table__)
    statement = (
        update(jobs).where(jobs.c.id == job.id, jobs.c.fair_round == turn.c.round).values(round_seq=turn.c.joined)
        .returning(turn.c.joined, turn.c.departed)
    )  # fmt: skip
    joined, departed = session.execute(statement).one()
    set_committed_value(job, "round_seq", int(joined))
    _note(session, job.queue, job.fair_round, int(joined), int(departed))


def _note(session: Session, queue: str, round_: int, joined: int, departed: int) -> None:
    """What a turn taken in this transaction left in its round's counter: `Positions` read before it (a create
    reads its queue's rounds before taking its turn) see it too."""
    session.info.setdefault(JOINED, {})[(queue, round_)] = (joined, departed)


def _forget(session: Session, queue: str, round_: int) -> None:
    session.info.get(JOINED, {}).pop((queue, round_), None)


def rejoin(session: Session, job: Job) -> None:
    """A job taken back from a lost worker: its departure is undone, so it is ahead of everyone who joined after
    its turn again (it departed from the front when it was claimed). Its round may have been dropped as drained:
    then the round is counted again as holding just it."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(QueueRound)
        .values(queue=job.queue, round=job.fair_round, joined=job.round_seq, departed=max(job.round_seq - 1, 0))
        .on_conflict_do_update(index_elements=["queue", "round"], set_={"departed": QueueRound.departed - 1})
    )
    session.execute(statement)
    _forget(session, job.queue, job.fair_round)


def depart(session: Session, queue: str, round_: int, count: int = 1) -> None:
    """Count jobs out of a round (claimed, canceled, failed or deleted while queued)."""
    where = (QueueRound.queue == queue, QueueRound.round == round_)
    session.execute(update(QueueRound).where(*where).values(departed=QueueRound.departed + count))
    _forget(session, queue, round_)


def depart_all(session: Session, job_ids: list[str]) -> None:
    """Before queued jobs are deleted (with their subject): count them out of their rounds."""
    if not job_ids:
        return
    rounds = session.execute(
        select(Job.queue, Job.fair_round, func.count(Job.id))
        .where(Job.id.in_(job_ids), Job.status == QUEUED)
        .group_by(Job.queue, Job.fair_round)
    ).all()
    for queue, round_, count in rounds:
        depart(session, queue, round_, count)


class Positions:
    """Queue positions for one request: each queue's live rounds are read once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._rounds: dict[str, dict[int, tuple[int, int]]] = {}

    def read(self, queue: str) -> None:
        """Reads the queue's live rounds now (a create, before its job takes a turn: see `take_turn`)."""
        self._live(queue)

    def _live(self, queue: str) -> dict[int, tuple[int, int]]:
        if queue not in self._rounds:
            rows = self.session.execute(
                select(QueueRound.round, QueueRound.joined, QueueRound.departed)
                .where(QueueRound.queue == queue, QueueRound.joined > QueueRound.departed)
                .order_by(QueueRound.round)
            ).all()
            self._rounds[queue] = {round_: (joined, departed) for round_, joined, departed in rows}
        rounds = self._rounds[queue]
        for (joined_queue, round_), counts in self.session.info.get(JOINED, {}).items():
            if joined_queue == queue:  # a turn this transaction took, perhaps after the read: the later counts
                rounds[round_] = max(rounds.get(round_, (0, 0)), counts)
        return rounds

    def of(self, job: Job) -> int:
        rounds = self._live(job.queue)
        before = sum(joined - departed for round_, (joined, departed) in rounds.items() if round_ < job.fair_round)
        joined, departed = rounds.get(job.fair_round, (0, 0))
        in_round = min(max(job.round_seq - 1 - departed, 0), max(joined - departed - 1, 0))
        return before + in_round


def repair(session: Session) -> int:
    """Recount every round's waiting jobs from the jobs themselves and drop drained rounds; returns the rounds
    corrected. The counters are locked before the jobs are counted: a job joining meanwhile waits for this
    transaction, so it is in neither the count nor the counters."""
    rows = session.scalars(select(QueueRound).with_for_update()).all()
    waiting = dict(
        ((queue, round_), count)
        for queue, round_, count in session.execute(
            select(Job.queue, Job.fair_round, func.count(Job.id)).where(Job.status == QUEUED)
            .group_by(Job.queue, Job.fair_round)
        ).all()
    )  # fmt: skip
    corrected = 0
    for row in rows:
        exact = waiting.get((row.queue, row.round), 0)
        if row.joined - row.departed != exact:
            row.departed = row.joined - exact
            corrected += 1
    session.flush()
    session.execute(delete(QueueRound).where(QueueRound.joined <= QueueRound.departed))
    return corrected
