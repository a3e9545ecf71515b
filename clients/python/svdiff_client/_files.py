"""Photos as multipart uploads: paths, bytes, binary files or PIL images (Pillow is optional)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeAlias, cast

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

PhotoInput: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | PILImage"
Upload = tuple[str, bytes, str]  # (filename, content, content type)

SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg", "jpg"), (b"\x89PNG\r\n\x1a\n", "image/png", "png"))
PIL_FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp")}


def sniff(content: bytes) -> tuple[str, str]:
    """(content type, extension) from the first bytes; the service recognises images from their bytes too."""
    for magic, media, ext in SIGNATURES:
        if content.startswith(magic):
            return media, ext
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp", "webp"
    return "application/octet-stream", "bin"


def _pil_image(photo: object) -> PILImage | None:
    module = sys.modules.get("PIL.Image")  # a PIL image can exist only once Pillow has been imported
    image_type = getattr(module, "Image", None)
    if image_type is not None and isinstance(photo, image_type):
        return cast("PILImage", photo)
    return None


def _encode_pil(image: PILImage) -> tuple[bytes, str, str]:
    """Saved in its own format when that is JPEG, PNG or WebP (JPEG at quality 95), otherwise as PNG."""
    fmt = image.format if image.format in PIL_FORMATS else "PNG"
    if fmt == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        fmt = "PNG"
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    media, ext = PIL_FORMATS[fmt]
    return out.getvalue(), media, ext


def to_upload(photo: PhotoInput, index: int) -> Upload:
    if isinstance(photo, str | os.PathLike):
        path = Path(photo)
        content = path.read_bytes()
        return path.name, content, sniff(content)[0]
    if isinstance(photo, bytes | bytearray | memoryview):
        content = bytes(photo)
        media, ext = sniff(content)
        return f"photo-{index}.{ext}", content, media
    image = _pil_image(photo)
    if image is not None:
        content, media, ext = _encode_pil(image)
        return f"photo-{index}.{ext}", content, media
    read = getattr(photo, "read", None)
    if callable(read):
        content = read()
        if not isinstance(content, bytes):
            raise TypeError("a file object passed as a photo must be opened in binary mode")
        name = Path(str(getattr(photo, "name", ""))).name or f"photo-{index}.{sniff(content)[1]}"
        return name, content, sniff(content)[0]
    raise TypeError(f"a photo is a path, bytes, a binary file or a PIL image, not {type(photo).__name__}")


def multipart_files(field: str, photos: Iterable[PhotoInput]) -> list[tuple[str, Upload]]:
    """The photos read into memory once, so a retried request sends the same bytes."""
    return [(field, to_upload(photo, index)) for index, photo in enumerate(photos)]
