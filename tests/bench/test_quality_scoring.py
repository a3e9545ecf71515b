"""The quality benchmark's scoring: the reader on true renders must give the rates a perfect model would get."""

from __future__ import annotations

import pytest

from basemodel import READER_PATH, world
from basemodel.reader import ObjectReading, Reading
from basemodel.subjects import SUBJECTS
from bench.quality.prompts import context_prompts, pair_prompts, unseen_backgrounds
from bench.quality.scoring import leaks, pair_flags, score_context, score_drift, score_pairs, shows_combination

DIAMOND, CROSS = SUBJECTS["green-dotted-diamond"], SUBJECTS["red-striped-cross"]


def _obj(subject: object, **change: str | None) -> ObjectReading:
    values = {kind: getattr(subject, kind) for kind in ("shape", "colour", "pattern", "tone", "marks", "outline")}
    return ObjectReading(position="left", **(values | change))


def _half(subject: object, **change: str) -> ObjectReading:
    values = {kind: getattr(subject, kind) for kind in ("shape", "colour", "pattern")} | change
    return ObjectReading(position="left", **values)


def test_shows_needs_the_whole_instance() -> None:
    assert DIAMOND.shown_by(_obj(DIAMOND))
    for kind, other in (("shape", "circle"), ("colour", "red"), ("pattern", "plain"), ("tone", "mid"),
                        ("marks", "fine"), ("outline", "soft")):  # fmt: skip
        assert not DIAMOND.shown_by(_obj(DIAMOND, **{kind: other})), kind
    assert shows_combination(_half(DIAMOND), DIAMOND)  # a pair half has no details read: the three attributes
    assert not shows_combination(_half(DIAMOND, colour="red"), DIAMOND)


def test_pair_flags() -> None:
    good = Reading("sand", (_half(DIAMOND), _half(CROSS)))
    assert pair_flags(good, DIAMOND, CROSS)["both"]
    assert not pair_flags(good, CROSS, DIAMOND)["both"]  # sides matter
    blended = Reading("sand", (_half(DIAMOND, pattern="striped"), _half(CROSS)))
    flags = pair_flags(blended, DIAMOND, CROSS)
    assert flags["leak"] and not flags["both"] and flags["right"]
    assert leaks(_half(DIAMOND, pattern="striped"), DIAMOND, CROSS)
    assert not pair_flags(Reading("sand", (_half(DIAMOND),)), DIAMOND, CROSS)["two"]


def test_prompts_are_new_contexts() -> None:
    prompts = context_prompts(DIAMOND, "sks", 4)
    seen = {scene.background for scene in DIAMOND.scenes(4)}
    assert len(prompts) == 3 * len(unseen_backgrounds(DIAMOND, 4)) > 0
    assert all(p.background not in seen and p.text.startswith("a sks diamond ") for p in prompts)
    training_order, swapped = pair_prompts((DIAMOND, "sks"), (CROSS, "zwx"))
    assert (training_order.left, training_order.right) == (DIAMOND.name, CROSS.name)
    assert (swapped.left, swapped.right) == (CROSS.name, DIAMOND.name)
    assert "sks diamond on the right" in swapped.text


@pytest.fixture(scope="module")
def reader():  # type: ignore[no-untyped-def]
    from basemodel.reader import load_reader

    return load_reader(READER_PATH)


def test_true_renders_score_perfectly(reader) -> None:  # type: ignore[no-untyped-def]
    """Scoring is exact where the reader reads the render right. (The reader itself is not: it finds the whole
    diamond on about 7 renders in 10, the report's "ceiling: renders"; those it misreads are left out here.)"""
    scenes = [scene for scene in DIAMOND.scenes(12)
              if DIAMOND.shown_by(reader.read([world.render_image(scene)], layout="single")[0].objects[0])]  # fmt: skip
    assert len(scenes) >= 4
    images = [world.render_image(scene) for scene in scenes]
    positions = [s.objects[0].position for s in scenes]
    scores = score_context(reader, images, DIAMOND, [s.background for s in scenes], positions)
    assert (scores.subject.value, scores.prompt.value, scores.details.value) == (1.0, 1.0, 1.0)
    other_bg = ["grass" if s.background != "grass" else "sand" for s in scenes]
    wrong = score_context(reader, images, DIAMOND, other_bg, positions)
    assert (wrong.subject.value, wrong.prompt.value, wrong.background.value) == (1.0, 0.0, 0.0)
    assert score_drift(reader, images, CROSS).value == 0.0
    assert score_drift(reader, images, DIAMOND).value == 1.0


def test_another_instance_of_the_same_combination_is_not_the_subject(reader) -> None:  # type: ignore[no-untyped-def]
    scenes = [world.Scene((s.objects[0].with_details(tone="deep", outline="soft"),), s.background, s.texture_seed)
              for s in DIAMOND.scenes(4)]  # fmt: skip
    images = [world.render_image(scene) for scene in scenes]
    scores = score_context(reader, images, DIAMOND, [s.background for s in scenes],
                           [s.objects[0].position for s in scenes])  # fmt: skip
    assert scores.subject.value == 0.0 and scores.combination.value == 1.0


def test_true_pair_renders(reader) -> None:  # type: ignore[no-untyped-def]
    image = world.render_image(world.Scene((DIAMOND.spec("left", "small"), CROSS.spec("right", "small")), "sand", 3))
    assert score_pairs(reader, [image], [(DIAMOND, CROSS)]).both.value == 1.0
    assert score_pairs(reader, [image], [(CROSS, DIAMOND)]).both.value == 0.0
    single = world.render_image(DIAMOND.scenes(1)[0])
    assert score_pairs(reader, [single], [(DIAMOND, CROSS)]).two.value == 0.0
