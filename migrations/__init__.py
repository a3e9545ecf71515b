"""Alembic history of the schema in `models/`; the same revisions run on PostgreSQL and SQLite."""
