from __future__ import annotations

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class QueueRound(Base):
    """One round of a queue's fair order (`core.fairness`): how many jobs ever joined it and how many departed from
    it (claimed, canceled, failed or deleted while queued). Queue positions are read from these few rows instead of
    counting the queue (`core.positions`)."""

    __tablename__ = "queue_rounds"

    queue: Mapped[str] = mapped_column(String(16), primary_key=True)
    round: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    joined: Mapped[int] = mapped_column(BigInteger, default=0)
    departed: Mapped[int] = mapped_column(BigInteger, default=0)
