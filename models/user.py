from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, CreatedMixin, IdMixin

Role = Literal["user", "admin"]


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="user")
    # Needed in clear to sign webhooks; shown to the user once, at creation.
    webhook_secret: Mapped[str] = mapped_column(String(100))

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="user", passive_deletes=True)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class ApiKey(IdMixin, CreatedMixin, Base):
    """An API key, stored only as the SHA-256 of the secret (the secret has 256 random bits)."""

    __tablename__ = "api_keys"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, for operators to recognise a key
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="api_keys")
