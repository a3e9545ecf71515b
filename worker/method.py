"""The one seam between the service and the method: every ML call of the workers goes through these functions.

The task shells (`worker.tasks.*`) do everything else: job rows, attempts, progress, cancel, storage, webhooks.
This module must import torch and `svdiff` only inside the functions, so the API can import the task names
without them. The inference process is long-lived: an implementation keeps the base pipeline and its SVD factors
resident and switches subjects by merging shifts (cached by checkpoint id), never by reloading the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

ProgressFn = Callable[[int, int], bool]
"""`progress(step, total)`: call it every step (and now and then during long preparations). It returns False when
the job must stop (cancel requested, or the job was deleted): then raise `Canceled`."""


class Canceled(Exception):
    """Raised by a method function when `progress` returned False."""


class MethodUnavailable(NotImplementedError):
    """The method runtime is not installed in this process."""


class BlobCache(Protocol):
    """Shared blobs of one base model (prior/class images), kept in storage under `priors/{fingerprint}/`."""

    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class SubjectInput:
    token: str  # the rare word that names the subject in prompts
    class_word: str  # e.g. "dog"
    photos: list[bytes]  # encoded JPEG/PNG/WebP, orientation applied, metadata stripped


@dataclass(frozen=True)
class TrainParams:
    steps: int
    learning_rate: float
    prior_preservation: bool = True
    cut_mix_unmix: bool = False
    train_text_encoder: bool = True
    checkpoint_every: int = 50  # call save_state at least this often (in steps)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainOutput:
    checkpoint: bytes  # the safetensors file of the spectral shifts
    metadata: dict[str, Any]  # hyperparameters and base model, also saved inside the file


@dataclass(frozen=True)
class GenerationInput:
    prompt: str
    negative_prompt: str | None
    num_images: int
    seed: int  # image i uses seed + i
    steps: int | None  # None: the method's default
    guidance_scale: float | None
    width: int | None
    height: int | None


@dataclass(frozen=True)
class EditInput:
    image: bytes
    source_prompt: str
    target_prompt: str
    steps: int | None
    strength: float | None
    seed: int


@dataclass(frozen=True)
class ImageOutput:
    png: bytes
    seed: int
    width: int
    height: int


class Method(Protocol):
    """What this module provides; a test double implements the same."""

    def train(
        self,
        subjects: list[SubjectInput],
        params: TrainParams,
        *,
        progress: ProgressFn,
        resume_state: bytes | None,
        save_state: Callable[[bytes], None],
        prior_cache: BlobCache,
    ) -> TrainOutput: ...

    def generate(
        self, request: GenerationInput, checkpoints: list[tuple[str, bytes, float]], *, progress: ProgressFn
    ) -> list[ImageOutput]: ...

    def edit(self, request: EditInput, *, progress: ProgressFn) -> ImageOutput: ...

    def export_lora(self, checkpoint: bytes, rank: int) -> bytes: ...

    def base_model_info(self) -> dict[str, str]: ...


def train(
    subjects: list[SubjectInput],
    params: TrainParams,
    *,
    progress: ProgressFn,
    resume_state: bytes | None,
    save_state: Callable[[bytes], None],
    prior_cache: BlobCache,
) -> TrainOutput:
    """Train shifts on 1-3 subjects; resume from `resume_state` when given; `save_state` every N steps."""
    from worker.svdiff_runtime import current_runtime

    return current_runtime().train(subjects, params, progress=progress, resume_state=resume_state,
                                    save_state=save_state, prior_cache=prior_cache)


def generate(
    request: GenerationInput, checkpoints: list[tuple[str, bytes, float]], *, progress: ProgressFn
) -> list[ImageOutput]:
    """`checkpoints`: (checkpoint id, shifts file, scale); none means the base model, several are combined."""
    from worker.svdiff_runtime import current_runtime

    return current_runtime().generate(request, checkpoints, progress=progress)


def edit(request: EditInput, *, progress: ProgressFn) -> ImageOutput:
    """Single-image edit: fine-tune on the image, DDIM-invert it, regenerate it with the target prompt."""
    from worker.svdiff_runtime import current_runtime

    return current_runtime().edit(request, progress=progress)


def export_lora(checkpoint: bytes, rank: int) -> bytes:
    """The best rank-`rank` LoRA (safetensors) of the shifts' weight deltas."""
    from worker.svdiff_runtime import current_runtime

    return current_runtime().export_lora(checkpoint, rank)


def base_model_info() -> dict[str, str]:
    """`{"name": ..., "fingerprint": ...}`: the fingerprint keys the shared prior images."""
    from worker.svdiff_runtime import current_runtime

    return current_runtime().info()
