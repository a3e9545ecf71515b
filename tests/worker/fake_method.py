"""A test double of `worker.method` (pytest only): deterministic, instant, and scriptable, so the task shells'
state handling can be tested without the ML. Results name their inputs so tests can check what reached it."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

from core.generation_options import aspect_size
from worker import method
from worker.method import (
    BlobCache,
    Canceled,
    EditInput,
    GenerationInput,
    ImageOutput,
    ProgressFn,
    SubjectInput,
    TrainOutput,
    TrainParams,
)


def png(width: int, height: int, seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (seed % 256, 0, 0)).save(out, "PNG")
    return out.getvalue()


class FakeMethod:
    def __init__(self) -> None:
        self.on_step: Callable[[int], None] | None = None
        self.error: Exception | None = None
        self.resumed_from: int | None = None
        self.checkpoints_seen: list[tuple[str, bytes, float]] = []
        self.generation_seen: GenerationInput | None = None

    def base_model_info(self) -> dict[str, str]:
        return {"name": "fake-base", "fingerprint": "fake0001"}

    def _steps(
        self, total: int, progress: ProgressFn, start: int = 0, save: Callable[[int], None] | None = None
    ) -> None:
        for step in range(start + 1, total + 1):
            if self.on_step:
                self.on_step(step)
            if self.error:
                raise self.error
            if not progress(step, total):
                raise Canceled()
            if save:
                save(step)

    def train(
        self, subjects: list[SubjectInput], params: TrainParams, *, progress: ProgressFn,
        resume_state: bytes | None, save_state: Callable[[bytes], None], prior_cache: BlobCache,
    ) -> TrainOutput:  # fmt: skip
        start = int(resume_state or b"0")
        self.resumed_from = start
        for subject in subjects:
            if prior_cache.get(f"{subject.class_word}/0.png") is None:
                prior_cache.put(f"{subject.class_word}/0.png", png(8, 8, 1))

        def save(step: int) -> None:
            if step % params.checkpoint_every == 0:
                save_state(str(step).encode())

        self._steps(params.steps, progress, start, save)
        names = ",".join(f"{s.token}:{len(s.photos)}" for s in subjects)
        return TrainOutput(
            checkpoint=f"shifts[{names}]".encode(),
            metadata={"format_version": 1, "steps": params.steps, "resumed_from": start},
        )

    def generate(
        self, request: GenerationInput, checkpoints: list[tuple[str, bytes, float]], *, progress: ProgressFn
    ) -> list[ImageOutput]:
        self.checkpoints_seen = checkpoints
        self._steps(request.steps or 3, progress)
        self.generation_seen = request
        size = (request.width or 64, request.height or 64)
        if request.aspect_ratio:  # a 64 px base, as the bundled one
            size = aspect_size(request.aspect_ratio, 64)
        return [ImageOutput(png(*size, request.seed + i), request.seed + i, *size) for i in range(request.num_images)]

    def edit(self, request: EditInput, *, progress: ProgressFn) -> ImageOutput:
        self._steps(request.steps or 3, progress)
        return ImageOutput(png(64, 64, request.seed), request.seed, 64, 64)

    def export_lora(self, checkpoint: bytes, rank: int) -> bytes:
        return b"lora-r%d:" % rank + checkpoint


@pytest.fixture
def fake_method(monkeypatch: pytest.MonkeyPatch) -> FakeMethod:
    fake = FakeMethod()
    for name in ("train", "generate", "edit", "export_lora", "base_model_info"):
        monkeypatch.setattr(method, name, getattr(fake, name))
    return fake
