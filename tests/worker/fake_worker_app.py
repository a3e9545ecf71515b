"""`celery -A tests.worker.fake_worker_app`: the real Celery app and task shells in a worker process, with
`worker.method` replaced by the test double; each step sleeps FAKE_STEP_SECONDS so a test can kill it mid-run."""

from __future__ import annotations

import os
import time

from tests.worker.fake_method import FakeMethod
from worker import method
from worker.app import app

fake = FakeMethod()
step_seconds = float(os.environ.get("FAKE_STEP_SECONDS", "0"))
fake.on_step = lambda step: time.sleep(step_seconds)
for name in ("train", "generate", "edit", "export_lora", "base_model_info"):
    setattr(method, name, getattr(fake, name))

__all__ = ["app"]
