"""Shared plumbing for the API and the workers: settings, database, storage, queue. Never imports torch."""
