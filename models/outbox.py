from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedMixin, IdMixin


class BlobDeletion(IdMixin, CreatedMixin, Base):
    """A storage prefix (or one blob's key) to delete, written in the transaction that deleted its rows: the
    outbox from which the API's after-commit attempt and then the reconciler finish the deletion."""

    __tablename__ = "blob_deletions"

    prefix: Mapped[str] = mapped_column(String(600))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
