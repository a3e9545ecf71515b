"""Class images: generated with DDIM by the base pipeline, cached by (base fingerprint, class word, count)."""

from __future__ import annotations

import numpy as np
import pytest

from svdiff.prior import DirectoryCache, class_image_key, class_images


class CountingCache(DirectoryCache):
    def __init__(self, root):
        super().__init__(root)
        self.puts: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        self.puts.append(key)
        super().put(key, data)


def _same(first, second) -> bool:
    return all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, second, strict=True))


def test_class_images_are_generated_once_then_read_back(pipe, tmp_path):
    cache = CountingCache(tmp_path / "prior")
    images, generated = class_images(pipe, "dog", 3, base_fingerprint="fp", cache=cache, steps=2, batch_size=2)
    assert generated == 3 and len(images) == 3 and images[0].size == (16, 16)
    assert sorted(cache.puts) == [f"fp/dog/3/{i}.png" for i in range(3)]
    again, generated = class_images(pipe, "dog", 3, base_fingerprint="fp", cache=cache, steps=2)
    assert generated == 0 and len(cache.puts) == 3 and _same(images, again)
    (tmp_path / "prior" / "fp/dog/3/1.png").unlink()  # a partly filled cache: only the gap is generated
    refilled, generated = class_images(pipe, "dog", 3, base_fingerprint="fp", cache=cache, steps=2)
    assert generated == 1 and cache.puts[-1] == "fp/dog/3/1.png" and _same(images, refilled)
    _, generated = class_images(pipe, "dog", 3, base_fingerprint="other", cache=cache, steps=2)
    assert generated == 3  # another base model never reuses them


def test_keys_are_path_safe_and_distinct():
    assert class_image_key("fp", "dog", 200, 7) == "fp/dog/200/7.png"
    spaced, slashed = class_image_key("fp", "red car", 2, 0), class_image_key("fp", "red/car", 2, 0)
    assert spaced != slashed and spaced.count("/") == slashed.count("/") == 3


def test_directory_cache_refuses_keys_outside_its_folder(tmp_path):
    cache = DirectoryCache(tmp_path / "cache")
    cache.put("a/b.png", b"x")
    assert cache.get("a/b.png") == b"x" and cache.get("a/c.png") is None
    with pytest.raises(ValueError, match="escapes"):
        cache.put("../outside.png", b"x")
