import numpy as np
import pytest

from basemodel import vocab, world
from basemodel.subjects import CONTROL_SUBJECTS, EXAMPLE_SUBJECTS, SUBJECTS, Subject


def test_base_training_never_draws_or_names_a_held_out_attribute() -> None:
    for seed in range(5000):
        scene, text = world.base_training_example(seed)
        for spec in scene.objects:
            assert spec.shape in vocab.BASE_SHAPES and spec.pattern in vocab.BASE_PATTERNS
        assert not set(text.replace(",", "").split()) & vocab.HELD_OUT_WORDS, text


def test_held_out_words_are_real_world_attributes_outside_the_base_palette() -> None:
    assert set(vocab.HELD_OUT_SHAPES) <= set(vocab.SHAPES) and set(vocab.HELD_OUT_PATTERNS) <= set(vocab.PATTERNS)
    assert not vocab.HELD_OUT_WORDS & set(world.BASE_PALETTE.shapes + world.BASE_PALETTE.patterns)


def test_every_subject_has_a_held_out_attribute_and_a_base_class_word() -> None:
    assert len(SUBJECTS) >= 4 and set(EXAMPLE_SUBJECTS) <= set(SUBJECTS)
    for subject in SUBJECTS.values():
        assert subject.held_out
        assert subject.class_word in (*vocab.BASE_SHAPES, vocab.UMBRELLA_CLASS)
        assert subject.prompt("sks") == f"a photo of sks {subject.class_word}"


def test_subject_photos_vary_and_are_reproducible() -> None:
    subject = SUBJECTS["purple-checkered-star"]
    scenes = subject.scenes()
    assert len({scene.background for scene in scenes}) == 4
    assert len({spec.position for scene in scenes for spec in scene.objects}) >= 2
    first, again = subject.photos(), subject.photos()
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again, strict=True))


def test_only_a_control_may_lack_a_held_out_attribute() -> None:
    with pytest.raises(ValueError, match="no held-out attribute"):
        Subject("pink-striped-triangle", "triangle", "pink", "striped", seed=21)
    assert not set(CONTROL_SUBJECTS) & set(SUBJECTS)
    for control in CONTROL_SUBJECTS.values():
        assert control.control and not control.held_out
        assert control.shape in vocab.BASE_SHAPES and control.pattern in vocab.BASE_PATTERNS
