"""Where each blob lives in storage. One function per kind of blob; nothing else builds keys.

Layout::

    users/{user_id}/subjects/{subject_id}/photos/{photo_id}.{ext}     uploaded photos (re-encoded, no metadata)
    users/{user_id}/checkpoints/{checkpoint_id}/shifts.safetensors     the spectral shifts of a training
    users/{user_id}/checkpoints/{checkpoint_id}/lora-r{rank}.safetensors   their rank-N LoRA export (cached)
    users/{user_id}/generations/{generation_id}/{index}.{ext}         generated images (png, jpg or webp)
    users/{user_id}/edits/{edit_id}/input.{ext}, output.png           single-image edits
    priors/{base_fingerprint}/{class_word}/{index}.png                shared prior-preservation (class) images
    training-state/{training_id}.bin                                  resumable state of a running training
"""

from __future__ import annotations


def user_prefix(user_id: str) -> str:
    return f"users/{user_id}/"


def subject_prefix(user_id: str, subject_id: str) -> str:
    return f"users/{user_id}/subjects/{subject_id}/"


def photo(user_id: str, subject_id: str, photo_id: str, ext: str) -> str:
    return f"{subject_prefix(user_id, subject_id)}photos/{photo_id}.{ext}"


def checkpoint_prefix(user_id: str, checkpoint_id: str) -> str:
    return f"users/{user_id}/checkpoints/{checkpoint_id}/"


def checkpoint_shifts(user_id: str, checkpoint_id: str) -> str:
    return f"{checkpoint_prefix(user_id, checkpoint_id)}shifts.safetensors"


def checkpoint_lora(user_id: str, checkpoint_id: str, rank: int) -> str:
    return f"{checkpoint_prefix(user_id, checkpoint_id)}lora-r{rank}.safetensors"


def generation_image(user_id: str, generation_id: str, index: int, ext: str = "png") -> str:
    return f"users/{user_id}/generations/{generation_id}/{index}.{ext}"


def edit_input(user_id: str, edit_id: str, ext: str) -> str:
    return f"users/{user_id}/edits/{edit_id}/input.{ext}"


def edit_output(user_id: str, edit_id: str) -> str:
    return f"users/{user_id}/edits/{edit_id}/output.png"


def job_prefix(user_id: str, kind: str, job_id: str) -> str:
    return f"users/{user_id}/{kind}s/{job_id}/"


def prior_prefix(base_fingerprint: str) -> str:
    return f"priors/{base_fingerprint}/"


def training_state(training_id: str) -> str:
    return f"training-state/{training_id}.bin"


PENDING_SUFFIX = ".pending"  # beside an export being made: when it was asked for (api.routes.checkpoints)
