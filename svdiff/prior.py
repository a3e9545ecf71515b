"""Class images for prior preservation: generated once per (base model, class word, count) and cached.

They depend only on the base model and the class word, so every later subject of that class reuses them. The
cache is a two-method protocol so the service can back it with object storage; `DirectoryCache` is the local one.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from svdiff.data import encode_png, iter_chunks, open_image
from svdiff.pipeline import ddim_scheduler, resolution

CLASS_PROMPT = "a photo of a {class_word}"


class BlobCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, data: bytes) -> None: ...


class DirectoryCache:
    """Blobs as files under `root`, keys as relative paths; writes are atomic."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"cache key {key!r} escapes the cache folder")
        return path

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _slug(class_word: str) -> str:
    """A path-safe name for a class word; a short hash keeps distinct words with the same slug apart."""
    slug = re.sub(r"[^a-z0-9_-]+", "_", class_word.strip().lower()).strip("_") or "class"
    if slug != class_word:
        slug += "-" + hashlib.sha256(class_word.encode()).hexdigest()[:8]
    return slug


def class_image_key(base_fingerprint: str, class_word: str, count: int, index: int) -> str:
    return f"{base_fingerprint}/{_slug(class_word)}/{count}/{index}.png"


def class_images(pipe: Any, class_word: str, count: int, *, base_fingerprint: str, cache: BlobCache | None = None,
                 steps: int = 50, guidance_scale: float = 7.5, prompt_template: str = CLASS_PROMPT,
                 batch_size: int = 4, seed: int = 0,
                 callback: Callable[[int, int], None] | None = None) -> tuple[list[Image.Image], int]:
    """`count` images of the bare class, from the cache or generated with DDIM; returns (images, generated).

    Image i always comes from seed `seed + i`, so a partly filled cache is completed with the same images that a
    single run would have made. The pipeline must be the base model (no merged or non-zero shifts).
    """
    images: dict[int, Image.Image] = {}
    missing = []
    for index in range(count):
        data = cache.get(class_image_key(base_fingerprint, class_word, count, index)) if cache else None
        if data is not None:
            images[index] = open_image(data)
        else:
            missing.append(index)
    prompt = prompt_template.format(class_word=class_word)
    done = count - len(missing)
    for chunk in iter_chunks(missing, batch_size):
        for index, image in zip(chunk, _generate(pipe, prompt, chunk, steps, guidance_scale, seed), strict=True):
            images[index] = image
            if cache is not None:
                cache.put(class_image_key(base_fingerprint, class_word, count, index), encode_png(image))
        done += len(chunk)
        if callback is not None:
            callback(done, count)
    return [images[i] for i in range(count)], len(missing)


def _generate(pipe: Any, prompt: str, indices: Sequence[int], steps: int, guidance_scale: float,
              seed: int) -> list[Image.Image]:
    size = resolution(pipe)
    generators = [torch.Generator().manual_seed(seed + i) for i in indices]
    with ddim_scheduler(pipe), torch.no_grad():
        out = pipe(prompt=[prompt] * len(indices), num_inference_steps=steps, guidance_scale=guidance_scale,
                   generator=generators, height=size, width=size, output_type="pil")
    return list(out.images)
