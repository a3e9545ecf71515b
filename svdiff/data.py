"""Photo preparation: bytes, paths or PIL images to pixel tensors at the model's resolution, and back."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

ImageSource = bytes | str | os.PathLike[str] | Image.Image
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ImageError(ValueError):
    """An input that is not a readable image."""


def open_image(source: ImageSource) -> Image.Image:
    """An RGB image, turned upright according to its EXIF orientation."""
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, bytes | bytearray):
            image = Image.open(io.BytesIO(source))
        else:
            image = Image.open(Path(source))
        image.load()
    except (OSError, ValueError) as exc:
        raise ImageError(f"not a readable image: {exc}") from exc
    return ImageOps.exif_transpose(image).convert("RGB")


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to `size` (Lanczos), then crop the centre square."""
    width, height = image.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = image.resize(new_size, Image.Resampling.LANCZOS)
    left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float32 in [-1, 1], the VAE's input range."""
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """The inverse of to_tensor for one (3, H, W) image."""
    array = ((pixels.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


def prepare_images(sources: Sequence[ImageSource], size: int) -> torch.Tensor:
    """(N, 3, size, size) pixels in [-1, 1]: EXIF-upright RGB, resized and centre-cropped."""
    if not sources:
        raise ImageError("no images given")
    return torch.stack([to_tensor(resize_and_crop(open_image(s), size)) for s in sources])


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly inside `folder`, sorted by name."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ImageError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def random_flip(pixels: torch.Tensor, generator: torch.Generator, enabled: bool = True) -> torch.Tensor:
    """Mirror each image of (N, 3, H, W) left-right with probability 1/2 (always draws, so RNG use is fixed)."""
    flips = torch.rand(pixels.shape[0], generator=generator) < 0.5  # (N,)
    if not enabled:
        return pixels
    return torch.where(flips.view(-1, 1, 1, 1).to(pixels.device), pixels.flip(-1), pixels)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def iter_chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
