"""The method as a worker process holds it: the base pipeline and its SVD factors, loaded once and kept resident.

Subjects are switched by merging their shifts into the resident weights (svdiff.sample merges and restores around
every generation); parsed checkpoints are kept in a small LRU cache by id, so a popular subject is neither fetched
nor parsed twice. Each worker thread gets its own runtime (the embedded mode runs one worker thread per queue).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

import svdiff
from core.generation_options import aspect_size
from svdiff.checkpoint import Checkpoint, check_compatible, deserialize, serialize
from svdiff.lora import export_lora
from svdiff.pipeline import resolution
from svdiff.state import TrainState, TrainStateError
from worker import method_types as method

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _step_callback(progress: method.ProgressFn) -> Callable[[int, int], bool]:
    return lambda step, total: progress(step, total)


class MethodRuntime:
    def __init__(self, base_model: str, *, device: str = "cpu", dtype: str = "float32",
                 svd_cache: Path | None = None, class_images: int = 200, class_image_steps: int = 50,
                 edit_finetune_steps: int = 300, checkpoint_cache_size: int = 16,
                 prompt_templates: tuple[str, ...] = (), token_rows: bool = False,
                 token_rows_learning_rate: float = 3e-3, mix_phrasings: tuple[tuple[str, str], ...] = ()) -> None:
        self.base_model = base_model
        self.pipe: Any = svdiff.load_pipeline(base_model, device=device, dtype=DTYPES[dtype])
        self.pipe.set_progress_bar_config(disable=True)
        self.shifts = svdiff.attach(svdiff.pipeline_components(self.pipe), svdiff.ShiftConfig(), cache=svd_cache)
        self.mixed_precision = "bf16" if device.startswith("cuda") and dtype == "float32" else "no"
        self.class_images = class_images
        self.class_image_steps = class_image_steps
        self.edit_finetune_steps = edit_finetune_steps
        self.prompt_templates = prompt_templates
        self.token_rows, self.token_rows_learning_rate = token_rows, token_rows_learning_rate
        self.mix_phrasings = mix_phrasings
        self._checkpoints: OrderedDict[str, Checkpoint] = OrderedDict()
        self._cache_size = checkpoint_cache_size

    def info(self) -> dict[str, str]:
        return {"name": self.base_model, "fingerprint": self.shifts.fingerprint}

    def _checkpoint(self, checkpoint_id: str, data: bytes) -> Checkpoint:
        cached = self._checkpoints.get(checkpoint_id)
        if cached is None:
            cached = deserialize(data)
            check_compatible(cached, self.shifts)
            self._checkpoints[checkpoint_id] = cached
            while len(self._checkpoints) > self._cache_size:
                self._checkpoints.popitem(last=False)
        self._checkpoints.move_to_end(checkpoint_id)
        return cached

    def train(self, subjects: list[method.SubjectInput], params: method.TrainParams, *, progress: method.ProgressFn,
              resume_state: bytes | None, save_state: Callable[[bytes], None],
              prior_cache: method.BlobCache) -> method.TrainOutput:
        config = svdiff.TrainConfig(
            steps=params.steps, lr=params.learning_rate, prior_preservation=params.prior_preservation,
            cut_mix_unmix=params.cut_mix_unmix, train_text_encoder=params.train_text_encoder,
            checkpoint_every=params.checkpoint_every, seed=params.seed, num_class_images=self.class_images,
            class_image_steps=self.class_image_steps, mixed_precision=self.mixed_precision,  # type: ignore[arg-type]
            prompt_templates=self.prompt_templates, token_rows=self.token_rows, lr_rows=self.token_rows_learning_rate,
            mix_phrasings=self.mix_phrasings,
        )
        resume = _readable_state(resume_state)
        result = svdiff.train(
            self.pipe, [svdiff.Subject(s.token, s.class_word, list(s.photos)) for s in subjects], config,
            shifts=self.shifts, prior_cache=prior_cache,
            callback=lambda p: progress(p.step, p.total), resume=resume,
            on_state=lambda state: save_state(state.to_bytes()), base_model_name=self.base_model,
        )
        if result.canceled:
            raise method.Canceled("training canceled")
        data = serialize(result.checkpoint)
        meta = result.checkpoint.metadata
        metadata = {"format_version": meta.format_version, "base_model": meta.base_model,
                    "base_fingerprints": meta.base_fingerprints, "subjects": meta.subjects,
                    "training": meta.training, "seconds": round(result.seconds, 3),
                    "resumed_from": resume.step if resume is not None else 0}
        return method.TrainOutput(checkpoint=data, metadata=metadata)

    def generate(self, request: method.GenerationInput, checkpoints: list[tuple[str, bytes, float]], *,
                 progress: method.ProgressFn) -> list[method.ImageOutput]:
        loaded = [(self._checkpoint(cid, data), scale) for cid, data, scale in checkpoints]
        width, height = self.size(request)
        try:
            images = svdiff.generate(
                self.pipe, self.shifts, request.prompt, checkpoints=loaded, negative_prompt=request.negative_prompt,
                num_images=request.num_images, seed=request.seed, steps=request.steps,
                guidance_scale=request.guidance_scale, width=width, height=height,
                callback=_step_callback(progress), scheduler=request.scheduler,
            )
        except svdiff.Canceled as exc:
            raise method.Canceled(str(exc)) from exc
        return [method.ImageOutput(_png(g.image), g.seed, g.image.width, g.image.height) for g in images]

    def size(self, request: method.GenerationInput) -> tuple[int | None, int | None]:
        """(width, height) to sample at: an aspect ratio maps to about the area of the base's native square."""
        if request.aspect_ratio is None:
            return request.width, request.height
        return aspect_size(request.aspect_ratio, resolution(self.pipe))

    def edit(self, request: method.EditInput, *, progress: method.ProgressFn) -> method.ImageOutput:
        options: dict[str, Any] = {}
        if request.steps is not None:
            options["steps"] = request.steps
        if request.strength is not None:
            options["strength"] = request.strength
        try:
            result = svdiff.edit(self.pipe, request.image, request.source_prompt, request.target_prompt,
                                 shifts=self.shifts, seed=request.seed, finetune_steps=self.edit_finetune_steps,
                                 callback=lambda p: progress(p.step, p.total), base_model_name=self.base_model,
                                 **options)
        except svdiff.Canceled as exc:
            raise method.Canceled(str(exc)) from exc
        return method.ImageOutput(_png(result.image), result.seed, result.image.width, result.image.height)

    def export_lora(self, checkpoint: bytes, rank: int) -> bytes:
        parsed = deserialize(checkpoint)
        check_compatible(parsed, self.shifts)
        export = export_lora(self.shifts, parsed.shifts, rank)
        return export.to_bytes({"format": "lora", "source": "svdiff", "rank": str(rank),
                                "base_model": self.base_model, "dropped_layers": str(len(export.dropped))})


def _readable_state(data: bytes | None) -> TrainState | None:
    """The saved state to resume from; an unreadable one is dropped (the run starts over) rather than failing
    every retry of the job."""
    if data is None:
        return None
    try:
        return TrainState.from_bytes(data)
    except TrainStateError as exc:
        log.warning("ignoring the saved training state: %s", exc)
        return None


_local = threading.local()
# diffusers/transformers build models on the meta device by patching torch globally while loading: two threads
# loading at once break each other ("Cannot copy out of meta tensor"). One load at a time per process.
_load_lock = threading.Lock()


def current_runtime() -> MethodRuntime:
    """This thread's runtime, created on first use from the settings."""
    runtime: MethodRuntime | None = getattr(_local, "runtime", None)
    if runtime is None:
        from core.settings import get_settings

        settings = get_settings()
        with _load_lock:
            runtime = MethodRuntime(
                settings.base_model, device=settings.device, dtype=settings.dtype,
                svd_cache=settings.svd_cache_path, class_images=settings.class_images,
                class_image_steps=settings.class_image_steps, edit_finetune_steps=settings.edit_finetune_steps,
                prompt_templates=settings.prompt_templates, token_rows=settings.token_rows,
                token_rows_learning_rate=settings.token_rows_learning_rate, mix_phrasings=settings.mix_phrasings,
            )
        _local.runtime = runtime
    return runtime
