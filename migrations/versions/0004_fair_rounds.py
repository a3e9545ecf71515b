"""jobs.fair_round: the round-robin order of queued jobs across users, and its indexes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 14:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fair_round", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.create_index(
            "ix_jobs_queue_status_fair", ["queue", "status", "fair_round", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_user_queue_status_round", ["user_id", "queue", "status", "fair_round"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_user_queue_status_round")
        batch_op.drop_index("ix_jobs_queue_status_fair")
        batch_op.drop_column("fair_round")
