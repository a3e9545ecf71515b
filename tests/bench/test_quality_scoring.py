"""The quality benchmark's scoring: the reader on true renders must give the rates a perfect model would get."""

from __future__ import annotations

import dataclasses

import pytest

from basemodel import READER_PATH, world
from basemodel.reader import ObjectReading, Reading
from basemodel.subjects import SUBJECTS
from bench.quality.prompts import context_prompts, pair_prompts, unseen_backgrounds
from bench.quality.scoring import (
    SingleScores,
    leaks,
    pair_flags,
    score_context,
    score_drift,
    score_pairs,
    shows,
    shows_held_out,
)

STAR, SQUARE = SUBJECTS["purple-checkered-star"], SUBJECTS["orange-ringed-square"]


def _obj(subject: object, **change: str) -> ObjectReading:
    values = {kind: getattr(subject, kind) for kind in ("shape", "colour", "pattern")} | change
    return ObjectReading(position="left", **values)


def test_shows_needs_every_attribute() -> None:
    assert shows(_obj(STAR), STAR)
    for kind, other in (("shape", "circle"), ("colour", "red"), ("pattern", "plain")):
        assert not shows(_obj(STAR, **{kind: other}), STAR)
    assert shows_held_out(_obj(STAR, shape="circle", colour="red"), STAR)  # checkered is held out
    assert not shows_held_out(_obj(STAR, pattern="plain"), STAR)  # star and purple are base attributes


def test_pair_flags() -> None:
    good = Reading("sand", (_obj(STAR), _obj(SQUARE)))
    assert pair_flags(good, STAR, SQUARE)["both"]
    assert not pair_flags(good, SQUARE, STAR)["both"]  # sides matter
    blended = Reading("sand", (_obj(STAR, pattern="ringed"), _obj(SQUARE)))
    flags = pair_flags(blended, STAR, SQUARE)
    assert flags["leak"] and not flags["both"] and flags["right"]
    assert leaks(_obj(STAR, pattern="ringed"), STAR, SQUARE)
    assert not pair_flags(Reading("sand", (_obj(STAR),)), STAR, SQUARE)["two"]


def test_prompts_are_new_contexts() -> None:
    prompts = context_prompts(STAR, "sks", 4)
    seen = {scene.background for scene in STAR.scenes(4)}
    assert len(prompts) == 3 * len(unseen_backgrounds(STAR, 4)) > 0
    assert all(p.background not in seen and p.text.startswith("a sks star ") for p in prompts)
    training_order, swapped = pair_prompts((STAR, "sks"), (SQUARE, "zwx"))
    assert (training_order.left, training_order.right) == (STAR.name, SQUARE.name)
    assert (swapped.left, swapped.right) == (SQUARE.name, STAR.name)
    assert "sks star on the right" in swapped.text


@pytest.fixture(scope="module")
def reader():  # type: ignore[no-untyped-def]
    if not (READER_PATH / "model.safetensors").exists():
        pytest.skip("the attribute reader is not built")
    from basemodel.reader import load_reader

    return load_reader(READER_PATH)


def test_true_renders_score_perfectly(reader) -> None:  # type: ignore[no-untyped-def]
    scenes = STAR.scenes(6)
    images = [world.render_image(scene) for scene in scenes]
    scores = score_context(
        reader, images, STAR, [s.background for s in scenes], [s.objects[0].position for s in scenes]
    )
    assert (scores.subject, scores.prompt) == (1.0, 1.0)
    wrong = score_context(
        reader,
        images,
        STAR,
        ["grass" if s.background != "grass" else "sand" for s in scenes],
        [s.objects[0].position for s in scenes],
    )
    assert (wrong.subject, wrong.prompt, wrong.background) == (1.0, 0.0, 0.0)
    assert score_drift(reader, images, SQUARE).subject == 0.0
    assert score_drift(reader, images, STAR).held_out == 1.0


def test_true_pair_renders(reader) -> None:  # type: ignore[no-untyped-def]
    left = dataclasses.replace(STAR.scenes(1)[0].objects[0], position="left", size="small", dx=0, dy=0)
    right = world.ObjectSpec(SQUARE.shape, SQUARE.colour, SQUARE.pattern, "right", "small")
    image = world.render_image(world.Scene((left, right), "sand", 3))
    assert score_pairs(reader, [image], [(STAR, SQUARE)]).both == 1.0
    assert score_pairs(reader, [image], [(SQUARE, STAR)]).both == 0.0
    single = world.render_image(STAR.scenes(1)[0])
    assert score_pairs(reader, [single], [(STAR, SQUARE)]).two == 0.0


def test_attributes_is_the_mean_of_the_one_attribute_rates() -> None:
    scores = SingleScores(n=4, subject=0.0, prompt=0.0, background=1.0, position=0.5, shape=1.0, colour=0.5,
                          pattern=0.0)  # fmt: skip
    assert scores.attributes == 0.5
