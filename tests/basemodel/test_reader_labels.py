"""What the attribute reader is trained to read: its labels for the instance details (no trained reader needed)."""

import pytest

from basemodel import vocab, world
from basemodel.reader import HEADS, scene_labels, scene_reading
from basemodel.train_reader import labelled_batch

DETAIL_HEADS = tuple(f"single_{kind}" for kind in vocab.DETAILS)


@pytest.mark.parametrize("pattern", vocab.PATTERNS[1:])
def test_a_single_patterned_object_has_a_label_for_every_detail(pattern: str) -> None:
    spec = world.ObjectSpec("moon", "white", pattern, "right", "small", tone="pale", marks="coarse", outline="bold")
    labels = scene_labels(world.Scene((spec,), "water"))
    assert {name: HEADS[name][labels[name]] for name in DETAIL_HEADS} == {
        "single_tone": "pale", "single_marks": "coarse", "single_outline": "bold",
    }  # fmt: skip
    assert all(index >= 0 for index in labels.values())


def test_a_plain_object_has_no_marks_label() -> None:
    spec = world.ObjectSpec("circle", "red", "plain", "left", "large", tone="deep", marks="coarse", outline="soft")
    labels = scene_labels(world.Scene((spec,), "grass"))
    assert "single_marks" not in labels
    assert HEADS["single_tone"][labels["single_tone"]] == "deep"
    assert HEADS["single_outline"][labels["single_outline"]] == "soft"
    assert scene_reading(world.Scene((spec,), "grass")).objects[0].marks is None


def test_pairs_have_no_detail_labels() -> None:
    left = world.ObjectSpec("star", "blue", "dotted", "left", "small", tone="pale")
    right = world.ObjectSpec("cross", "pink", "striped", "right", "small", outline="bold")
    labels = scene_labels(world.Scene((left, right), "sand"))
    assert not {name for name in labels if name.startswith("single_")}
    assert all(reading.details == dict.fromkeys(vocab.DETAILS) for reading in scene_reading(
        world.Scene((left, right), "sand")).objects)  # fmt: skip


def test_training_targets_ignore_only_what_does_not_apply() -> None:
    images, targets = labelled_batch(range(64))
    assert images.shape == (64, 3, world.FRAME, world.FRAME)
    single = targets["count"] == 0
    assert 0 < int(single.sum()) < 64
    for name in ("single_tone", "single_outline"):
        assert bool((targets[name][single] >= 0).all()) and bool((targets[name][~single] == -100).all()), name
    plain = targets["single_pattern"] == vocab.PATTERNS.index("plain")
    assert bool((targets["single_marks"][single & ~plain] >= 0).all())
    assert bool((targets["single_marks"][~(single & ~plain)] == -100).all())
