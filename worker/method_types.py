"""What the service and the method exchange: inputs, outputs, errors and the Method protocol (no torch, no svdiff).

`worker.method` is the seam the task shells call; `worker.svdiff_runtime` implements it; both import these types,
neither imports the other at import time.
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
    scheduler: str | None = None  # "ddim" | "dpm++" | "euler_a"; None: the pipeline's own
    aspect_ratio: str | None = None  # "W:H" instead of width/height: core.generation_options.aspect_size


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
