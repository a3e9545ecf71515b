"""The demo's subject fidelity: the share of single-subject images in which the reader finds the whole subject."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from basemodel import world
from basemodel.reader import AttributeReader, load_reader
from basemodel.subjects import SUBJECTS
from demo.quality import Fidelity, subject_fidelity
from demo.run import score_images

DIAMOND, CROSS = "green-dotted-diamond", "red-striped-cross"


@pytest.fixture(scope="module")
def reader() -> AttributeReader:
    return load_reader()


def render(name: str, position: str = "left", background: str = "grass") -> Image.Image:
    return world.render_image(world.Scene((SUBJECTS[name].spec(position, "large"),), background))


def test_the_line_reports_the_rate_and_the_count() -> None:
    assert Fidelity(found=2, n=3).line() == "demo-quality: subject fidelity 0.667 over 3 images"
    assert math.isnan(Fidelity(found=0, n=0).rate)


def test_images_of_folders_that_are_no_subject_are_not_counted() -> None:
    assert subject_fidelity([("my-dog", render(DIAMOND))]) == Fidelity(found=0, n=0)


def test_true_renders_of_the_subject_are_all_found(reader: AttributeReader) -> None:
    images = [(DIAMOND, render(DIAMOND, "left", "grass")), (DIAMOND, render(DIAMOND, "right", "water"))]
    fidelity = subject_fidelity(images, reader)
    assert (fidelity.rate, fidelity.n) == (1.0, 2)


def test_another_subject_is_not_the_subject(reader: AttributeReader) -> None:
    fidelity = subject_fidelity([(DIAMOND, render(CROSS)), (CROSS, render(DIAMOND, "centre", "sand"))], reader)
    assert (fidelity.rate, fidelity.n) == (0.0, 2)


def test_the_demo_scores_its_single_subject_files_only(reader: AttributeReader, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr("basemodel.reader.load_reader", lambda: reader)
    saved: dict[Path, str | None] = {}
    for file, shown, image in [("a-0.png", DIAMOND, render(DIAMOND)), ("pair-0.png", None, render(CROSS)),
                               ("b-0.png", "my-dog", render(CROSS))]:  # fmt: skip
        image.save(tmp_path / file)
        saved[tmp_path / file] = shown
    assert score_images(saved) == Fidelity(found=1, n=1)
