"""queue_rounds and jobs.round_seq: per-round counters of the fair order, so that a queue position is read from a
few rows instead of counting the queue (`core.positions`). Jobs queued now are counted in and take their turns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queue_rounds",
        sa.Column("queue", sa.String(length=16), nullable=False),
        sa.Column("round", sa.BigInteger(), nullable=False),
        sa.Column("joined", sa.BigInteger(), nullable=False),
        sa.Column("departed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("queue", "round", name=op.f("pk_queue_rounds")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("round_seq", sa.BigInteger(), server_default="0", nullable=False))
    op.execute(
        "INSERT INTO queue_rounds (queue, round, joined, departed) "
        "SELECT queue, fair_round, count(*), 0 FROM jobs WHERE status = 'queued' GROUP BY queue, fair_round"
    )
    op.execute(
        "UPDATE jobs SET round_seq = turns.seq FROM (SELECT id, row_number() OVER "
        "(PARTITION BY queue, fair_round ORDER BY created_at, id) AS seq FROM jobs WHERE status = 'queued') AS turns "
        "WHERE jobs.id = turns.id"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("round_seq")
    op.drop_table("queue_rounds")
