"""Fuzzed EXIF: whatever the metadata holds, a photo is accepted or refused with a 4xx, never a crash (a 500)."""

from __future__ import annotations

import random

import pytest

from api.images import check_image, clean_image
from core.errors import ServiceError, UnsupportedMedia
from tests.images import jpeg_with_exif

CASES = 400


def _mutated(seed: int) -> bytes:
    """The EXIF segment (APP1) of a real photo with a few bytes overwritten at random."""
    data = bytearray(jpeg_with_exif(orientation=6, size=(300, 260)))
    start = data.index(b"Exif\x00\x00")
    end = start + int.from_bytes(data[start - 2 : start], "big") - 2
    rng = random.Random(seed)
    for _ in range(rng.randint(1, 6)):
        data[rng.randrange(start + 6, end)] = rng.randrange(256)
    return bytes(data)


def test_fuzzed_exif_is_accepted_or_refused_as_a_bad_file() -> None:
    refused_for_exif = 0
    for seed in range(CASES):
        data = _mutated(seed)
        try:
            check_image(data, max_pixels=10_000_000, min_side=64)
            clean_image(data, max_pixels=10_000_000, min_side=64)
        except ServiceError as exc:
            assert 400 <= exc.status < 500, (seed, exc)
            refused_for_exif += isinstance(exc, UnsupportedMedia) and "EXIF" in str(exc)
    # The fuzz reaches the EXIF parser's own failures (struct.error, TypeError, ... before the fix: 500s).
    assert refused_for_exif > 0


@pytest.mark.parametrize("seed", [s for s in range(CASES) if s % 97 == 0])
def test_a_fuzzed_exif_upload_gets_a_problem_naming_the_file(seed: int, client, user) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import auth

    subject = client.post("/v1/subjects", json={"name": "Rex", "class_word": "dog"}, headers=auth(user)).json()
    response = client.post(f"/v1/subjects/{subject['id']}/photos", headers=auth(user),
                           files=[("files", (f"fuzz-{seed}.jpg", _mutated(seed), "image/jpeg"))])  # fmt: skip
    assert response.status_code in (201, 413, 415, 422), response.text
    if response.status_code != 201:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert f"fuzz-{seed}.jpg" in response.text
