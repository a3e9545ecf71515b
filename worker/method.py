"""The one seam between the service and the method: every ML call of the workers goes through these functions.

The task shells (`worker.tasks.*`) do everything else: job rows, attempts, progress, cancel, storage, webhooks.
This module must import torch and `svdiff` only inside the functions, so the API can import the task names
without them. The inference process is long-lived: an implementation keeps the base pipeline and its SVD factors
resident and switches subjects by merging shifts (cached by checkpoint id), never by reloading the model.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.method_types import (
    BlobCache,
    Canceled,
    EditInput,
    GenerationInput,
    ImageOutput,
    Method,
    MethodUnavailable,
    ProgressFn,
    SubjectInput,
    TrainOutput,
    TrainParams,
)

__all__ = [
    "BlobCache",
    "Canceled",
    "EditInput",
    "GenerationInput",
    "ImageOutput",
    "Method",
    "MethodUnavailable",
    "ProgressFn",
    "SubjectInput",
    "TrainOutput",
    "TrainParams",
    "base_model_info",
    "edit",
    "export_lora",
    "generate",
    "train",
]


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
