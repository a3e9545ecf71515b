from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from models.base import Base, CreatedMixin, IdMixin, new_id


class Photo(IdMixin, CreatedMixin, Base):
    __tablename__ = "photos"

    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    storage_key: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(40))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))


class Subject(CreatedMixin, Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("user_id", "token", name="uq_subjects_user_token"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    class_word: Mapped[str] = mapped_column(String(50))
    token: Mapped[str] = mapped_column(String(32))

    photos: Mapped[list[Photo]] = relationship(order_by=lambda: (Photo.created_at, Photo.id), viewonly=True)
    photo_count: Mapped[int] = column_property(
        select(func.count(Photo.id)).where(Photo.subject_id == id).correlate_except(Photo).scalar_subquery()
    )
