"""Image checks from the bytes (never the declared type or the name), then re-encoding: EXIF orientation
applied, every metadata block (EXIF, GPS, XMP, ICC comments) dropped."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import InvalidInput, ServiceError, TooLarge, UnsupportedMedia

FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp")}


@dataclass
class CleanImage:
    data: bytes
    ext: str
    content_type: str
    width: int
    height: int
    sha256: str


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Decode fully, refusing non-images, other formats, truncation and decompression bombs."""
    try:
        image = Image.open(io.BytesIO(data), formats=list(FORMATS))  # reads the header only
        width, height = image.size
        if width * height > max_pixels:  # before decoding a single pixel
            raise TooLarge(f"{width}x{height} is over {max_pixels // 1_000_000} megapixels")
        image.load()  # reads every byte: truncated or corrupt data fails here
    except ServiceError:
        raise
    except UnidentifiedImageError as exc:
        raise UnsupportedMedia("not a JPEG, PNG or WebP image") from exc
    except Image.DecompressionBombError as exc:
        raise TooLarge("decompression bomb: too many pixels") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UnsupportedMedia(f"corrupt or truncated image ({exc})") from exc
    return image


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says. Pillow parses EXIF lazily, here, and malformed EXIF raises
    whatever its parser meets (struct.error, TypeError, SyntaxError, KeyError...): any of them is a bad file."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception as exc:
        raise UnsupportedMedia(f"unreadable EXIF metadata ({type(exc).__name__}: {exc})") from exc


def _checked(data: bytes, *, max_pixels: int, min_side: int) -> Image.Image:
    image = _upright(_open(data, max_pixels))
    if min(image.size) < min_side:
        raise InvalidInput(f"{image.width}x{image.height}: the shorter side must be at least {min_side} px")
    return image


def check_image(data: bytes, *, max_pixels: int, min_side: int) -> None:
    """Raises a ServiceError (415, 413 or 422) saying what is wrong with the image."""
    _checked(data, max_pixels=max_pixels, min_side=min_side).close()


def clean_image(data: bytes, *, max_pixels: int, min_side: int) -> CleanImage:
    image = _checked(data, max_pixels=max_pixels, min_side=min_side)
    source_format = Image.open(io.BytesIO(data)).format or "PNG"
    if source_format == "MPO":  # a phone camera's multi-picture JPEG: its first picture, as a plain JPEG
        source_format = "JPEG"
    ext, content_type = FORMATS[source_format]
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit greyscale PNG: convert() would clip it to white
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if source_format == "JPEG":
        pixels, options = image.convert("RGB"), {"quality": 95}
    elif source_format == "WEBP":
        pixels, options = image.convert("RGBA" if "A" in image.getbands() else "RGB"), {"quality": 95}
    else:
        pixels, options = image.convert(image.mode if image.mode in ("RGB", "RGBA", "L", "LA") else "RGBA"), {}
    pixels.info = {}  # Pillow would write some of it back (a JPEG comment, a PNG ICC profile...)
    out = io.BytesIO()
    pixels.save(out, source_format, **options)
    encoded = out.getvalue()
    return CleanImage(encoded, ext, content_type, image.width, image.height, hashlib.sha256(encoded).hexdigest())
