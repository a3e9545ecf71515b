import numpy as np

from basemodel import vocab, world
from basemodel.tokenizer import MAX_LENGTH, build_tokenizer


def test_same_seed_same_image_and_caption() -> None:
    first, second = world.base_training_example(123), world.base_training_example(123)
    assert first == second
    assert np.array_equal(world.render(first[0]), world.render(second[0]))
    assert not np.array_equal(world.render(first[0]), world.render(world.base_training_example(124)[0]))


def test_full_caption_names_every_attribute() -> None:
    spec = world.ObjectSpec("star", "red", "striped", "left", "large")
    scene = world.Scene((spec,), "grass")
    assert world.caption(scene) == "a large red striped star on the left, on a grass background"
    pair = world.Scene((spec, world.ObjectSpec("circle", "orange", "plain", "right", "small")), "sand")
    expected = "a red striped star on the left and an orange plain circle on the right, on a sand background"
    assert world.caption(pair) == expected


def test_every_shape_and_pattern_marks_the_image() -> None:
    for shape in vocab.SHAPES:
        coverage = world.shape_mask(shape, 32.0, 32.0, 16.0, 64).mean()
        assert 0.05 < coverage < 0.5, shape
    for pattern in vocab.PATTERNS[1:]:
        assert 0.1 < world.pattern_marks(pattern, 32.0, 32.0, 1.0, 64).mean() < 0.6, pattern


def test_renders_at_larger_sizes() -> None:
    scene, _ = world.base_training_example(7)
    image = world.render(scene, 128)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8


def test_captions_use_only_vocabulary_words_and_fit_the_text_encoder() -> None:
    tokenizer = build_tokenizer()
    known = set(vocab.WORLD_WORDS)
    for seed in range(300):
        _, text = world.base_training_example(seed)
        assert set(text.replace(",", "").split()) <= known, text
        assert len(tokenizer(text).input_ids) <= MAX_LENGTH
