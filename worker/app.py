"""`celery -A worker.app worker -Q training` works too; the operator tool (`svdiff-service worker`) uses this."""

from core.celery_app import default_app

app = default_app()
