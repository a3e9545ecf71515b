"""jobs.pace_from_step, jobs.pace_from_at: the first step an attempt reported and when, so that a running job's ETA
is its pace since then, not since it started (which counts loading the model and making class images).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 14:25:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pace_from_step", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("pace_from_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("pace_from_at")
        batch_op.drop_column("pace_from_step")
