"""End-to-end fixtures: real Celery worker processes running the real method (worker.svdiff_runtime, not the test
double) on a tiny saved pipeline, against the test PostgreSQL, Redis broker and S3 (moto) server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, auth, drop_waiting_jobs

SHARED_PHOTOS = ROOT.parent / "shared" / "data" / "photos" / "dog"
FIXTURE_PHOTOS = ROOT / "tests" / "fixtures" / "photos"
FINAL = ("succeeded", "failed", "canceled")


def dog_photos() -> list[Path]:
    """The DreamBooth dog: the shared data set's photos when this checkout has them, else the fixtures'."""
    folder = SHARED_PHOTOS if SHARED_PHOTOS.is_dir() and any(SHARED_PHOTOS.glob("*.jpg")) else FIXTURE_PHOTOS
    return sorted(folder.glob("*.jpg"))


def real_worker_env(base_model: Path | str, svd_cache: Path, **extra: str) -> dict[str, str]:
    """One torch thread (the machine is shared: oversubscribed torch is slower by orders of magnitude), and the
    smallest prior-preservation settings."""
    return {
        "SVDIFF_BASE_MODEL": str(base_model),
        "SVDIFF_SVD_CACHE_DIR": str(svd_cache),
        "SVDIFF_CLASS_IMAGES": "2",
        "SVDIFF_CLASS_IMAGE_STEPS": "2",
        "SVDIFF_EDIT_FINETUNE_STEPS": "2",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        **extra,
    }


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test pipeline saved as a diffusers folder, as a deployment's base model would be."""
    from tests.svdiff.tiny import tiny_pipeline

    folder = tmp_path_factory.mktemp("tiny-base")
    tiny_pipeline(folder / "parts", max_length=24).save_pretrained(folder / "pipe")
    return folder / "pipe"


def purge(runtime: Any, *queues: str) -> None:
    """Drop the jobs and messages earlier tests left (jobs nobody ran): a real worker must not train them."""
    drop_waiting_jobs(runtime, *queues)


def wait_job(client: httpx.Client, user: dict[str, str], path: str, timeout: float = 180.0,
             alive: Callable[[], None] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(path, headers=auth(user)).json()
        if job["status"] in FINAL:
            return dict(job)
        if alive is not None:
            alive()
        time.sleep(0.3)
    raise AssertionError(f"{path} still {job['status']} after {timeout:.0f} s")


def worker_alive(proc: Any, log: Path) -> Callable[[], None]:
    def check() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}):\n{log.read_text()[-4000:]}")

    return check


@pytest.fixture(scope="session")
def e2e_data(service_env: dict[str, str]) -> Path:
    return Path(service_env["SVDIFF_DATA_DIR"])


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[], Any]]:
    from tests.worker.test_webhooks import Receiver

    made: list[Any] = []

    def make() -> Any:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.server.shutdown()
