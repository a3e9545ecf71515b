"""The generation options of API v1.1 that both the API (validation, documentation) and the workers (sizes, image
encoding) read: scheduler names, output formats and aspect ratios. No torch here: the API imports it."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

SchedulerName = Literal["ddim", "dpm++", "euler_a"]
OutputFormat = Literal["png", "jpeg", "webp"]
AspectRatio = Literal["1:1", "4:3", "3:4", "16:9", "9:16"]

SCHEDULERS: tuple[SchedulerName, ...] = ("ddim", "dpm++", "euler_a")
ASPECT_RATIOS: tuple[AspectRatio, ...] = ("1:1", "4:3", "3:4", "16:9", "9:16")
SIZE_MULTIPLE = 8  # Stable Diffusion pipelines refuse sides that are not multiples of 8
DEFAULT_QUALITY = 90  # JPEG and WebP, when a lossy format is asked for without `quality`


@dataclass(frozen=True)
class ImageFormat:
    name: OutputFormat
    ext: str  # of the storage key; the presigned links' Content-Type follows the stored one
    content_type: str
    pil: str  # PIL's format name
    lossy: bool


FORMATS: dict[str, ImageFormat] = {
    "png": ImageFormat("png", "png", "image/png", "PNG", lossy=False),
    "jpeg": ImageFormat("jpeg", "jpg", "image/jpeg", "JPEG", lossy=True),
    "webp": ImageFormat("webp", "webp", "image/webp", "WEBP", lossy=True),
}
PNG = FORMATS["png"]
_BY_EXT = {f.ext: f for f in FORMATS.values()}


def image_format_of_key(key: str) -> ImageFormat | None:
    """The image format a storage key's extension names; None for any other blob."""
    return _BY_EXT.get(key.rsplit(".", 1)[-1].lower())


def format_of_key(key: str) -> ImageFormat:
    """The format of a stored output image (every image key ends with its extension; images before v1.1 are .png)."""
    return image_format_of_key(key) or PNG


def aspect_size(ratio: str, native: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """(width, height) of `ratio` ("W:H") with about the area of the base model's native `native` x `native`
    square, each side rounded to the nearest multiple of `multiple` (at least one multiple)."""
    across, down = (int(part) for part in ratio.split(":"))
    stretch = math.sqrt(across / down)

    def side(length: float) -> int:
        return max(multiple, round(length / multiple) * multiple)

    return side(native * stretch), side(native / stretch)


def aspect_table(native: int) -> str:
    """`1:1` 64x64, `4:3` 72x56, ...: the sizes `aspect_size` gives for one native side, for documentation."""
    return ", ".join(f"`{r}` {'x'.join(map(str, aspect_size(r, native)))}" for r in ASPECT_RATIOS)


def encode(png: bytes, image_format: ImageFormat, quality: int | None) -> bytes:
    """The PNG a method returned, in `image_format` (PNG as it came; lossy ones at `quality`, default 90)."""
    if not image_format.lossy:
        return png
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, format=image_format.pil, quality=quality or DEFAULT_QUALITY)
    return out.getvalue()
