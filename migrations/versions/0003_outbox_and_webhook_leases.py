"""blob_deletions: the outbox of storage deletions (a subject's or photo's blobs), finished by the reconciler;
webhook_deliveries.leased_until: an attempt under way, so no row lock is held across the network;
jobs (queue, enqueued_at): the reconciler's "was a job sent after this one claimed?"

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob_deletions",
        sa.Column("prefix", sa.String(length=600), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blob_deletions")),
    )
    with op.batch_alter_table("blob_deletions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blob_deletions_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_blob_deletions_next_attempt_at"), ["next_attempt_at"], unique=False)
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_queue_enqueued", ["queue", "enqueued_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_queue_enqueued")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_column("leased_until")
    with op.batch_alter_table("blob_deletions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blob_deletions_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_blob_deletions_created_at"))
    op.drop_table("blob_deletions")
