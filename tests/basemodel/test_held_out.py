from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from basemodel import vocab, world
from basemodel.reader import ObjectReading, scene_reading
from basemodel.subjects import EXAMPLE_SUBJECTS, INSTANCE_SUBJECTS, STRESS_SUBJECTS, SUBJECTS, Subject

ROOT = Path(__file__).resolve().parents[2]


def test_base_training_never_draws_or_names_a_held_out_attribute() -> None:
    for seed in range(5000):
        scene, text = world.base_training_example(seed)
        for spec in scene.objects:
            assert spec.shape in vocab.BASE_SHAPES and spec.pattern in vocab.BASE_PATTERNS
        assert not set(text.replace(",", "").split()) & vocab.HELD_OUT_WORDS, text


def test_held_out_words_are_real_world_attributes_outside_the_base_palette() -> None:
    assert set(vocab.HELD_OUT_SHAPES) <= set(vocab.SHAPES) and set(vocab.HELD_OUT_PATTERNS) <= set(vocab.PATTERNS)
    assert not vocab.HELD_OUT_WORDS & set(world.BASE_PALETTE.shapes + world.BASE_PALETTE.patterns)
    assert world.BASE_PALETTE.excluded == vocab.INSTANCE_COMBINATIONS


def test_subjects_split_into_instance_and_stress_subjects() -> None:
    assert set(INSTANCE_SUBJECTS) | set(STRESS_SUBJECTS) == set(SUBJECTS)
    assert not set(INSTANCE_SUBJECTS) & set(STRESS_SUBJECTS)
    assert set(EXAMPLE_SUBJECTS) <= set(INSTANCE_SUBJECTS)
    assert {SUBJECTS[name].combination for name in INSTANCE_SUBJECTS} == vocab.INSTANCE_COMBINATIONS


def test_instance_subjects_are_a_held_out_combination_of_known_words_with_their_own_details() -> None:
    cues = [vocab.IDENTIFIER_CUES[token] for token in ("sks", "zwx")]
    for name in INSTANCE_SUBJECTS:
        subject = SUBJECTS[name]
        assert subject.kind == "instance" and subject.combination in vocab.INSTANCE_COMBINATIONS
        assert not subject.held_out
        assert subject.shape in vocab.BASE_SHAPES and subject.pattern in vocab.BASE_PATTERNS
        # Else the identifier the service gives out first would already ask for the subject's details.
        for cue in cues:
            assert subject.details != {kind: cue[kind] for kind in subject.details}, name


def test_stress_subjects_have_a_held_out_word() -> None:
    assert STRESS_SUBJECTS
    for name in STRESS_SUBJECTS:
        subject = SUBJECTS[name]
        assert subject.kind == "stress" and subject.held_out
        assert {subject.shape, subject.pattern} & vocab.HELD_OUT_WORDS


def test_every_subject_has_a_base_class_word() -> None:
    for subject in SUBJECTS.values():
        assert subject.class_word in (*vocab.BASE_SHAPES, vocab.UMBRELLA_CLASS)
        assert subject.prompt("sks") == f"a photo of sks {subject.class_word}"


def test_a_subject_the_base_model_could_draw_is_refused() -> None:
    with pytest.raises(ValueError, match="neither"):
        Subject("pink-striped-triangle", "triangle", "pink", "striped", seed=21)
    with pytest.raises(ValueError, match="tone"):
        Subject("green-dotted-diamond", "diamond", "green", "dotted", seed=31, tone="bright")


def test_subject_photos_vary_show_its_details_and_are_reproducible() -> None:
    subject = SUBJECTS["green-dotted-diamond"]
    scenes = subject.scenes()
    assert len({scene.background for scene in scenes}) == 4
    assert len({spec.position for scene in scenes for spec in scene.objects}) >= 2
    for scene in scenes:
        (spec,) = scene.objects
        assert (spec.shape, spec.colour, spec.pattern) == subject.combination
        assert spec.details == {"tone": subject.tone, "marks": subject.marks, "outline": subject.outline}
    first, again = subject.photos(), subject.photos()
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again, strict=True))


def test_the_examples_folder_holds_the_example_subjects_photos() -> None:
    folders = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())
    assert folders == sorted(EXAMPLE_SUBJECTS)
    for name in EXAMPLE_SUBJECTS:
        files = sorted((ROOT / "examples" / name).glob("*.png"))
        renders = SUBJECTS[name].photos()
        assert len(files) == len(renders), name
        for file, render in zip(files, renders, strict=True):
            assert np.array_equal(np.asarray(Image.open(file).convert("RGB")), np.asarray(render)), file


def perfect_reading(subject: Subject) -> ObjectReading:
    (reading,) = scene_reading(world.Scene((subject.spec("left", "large"),), "grass")).objects
    return reading


@pytest.mark.parametrize("name", sorted(SUBJECTS))
def test_shown_by_takes_the_whole_subject_and_rejects_any_one_difference(name: str) -> None:
    subject = SUBJECTS[name]
    reading = perfect_reading(subject)
    assert subject.shown_by(reading)
    fields = {"shape": vocab.SHAPES, "colour": vocab.COLOURS, "pattern": vocab.PATTERNS, **vocab.DETAILS}
    for field, values in fields.items():
        for other in values:
            if other != getattr(reading, field):
                assert not subject.shown_by(replace(reading, **{field: other})), (field, other)
    for kind in vocab.DETAILS:
        assert not subject.shown_by(replace(reading, **{kind: None})), kind  # as a pair half reads


def test_shown_by_ignores_marks_only_on_a_plain_subject() -> None:
    # No subject is plain; the rule is the reader's: a plain object has no marks to read.
    subject = Subject("plain-probe", "heart", "red", "plain", seed=1, marks="coarse")
    assert "marks" not in subject.details
    assert subject.shown_by(replace(perfect_reading(subject), marks=None))
    assert not subject.shown_by(replace(perfect_reading(subject), tone="pale"))
