import re

import numpy as np

from basemodel import vocab, world
from basemodel.tokenizer import MAX_LENGTH, build_tokenizer

DETAIL_WORDS = frozenset(value for values in vocab.DETAILS.values() for value in values)
_PAIR_PART = re.compile(r"(?P<words>.+) on the (?P<position>left|right)$")


def render_alone(spec: world.ObjectSpec) -> np.ndarray:
    return world.render(world.Scene((spec,), "grey"))


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


def test_an_identifier_goes_before_its_objects_words() -> None:
    spec = world.ObjectSpec("star", "red", "striped", "left", "large")
    pair = world.Scene((spec, world.ObjectSpec("circle", "orange", "plain", "right", "small")), "sand")
    expected = "a red striped star on the left and a zwx orange plain circle on the right, on a sand background"
    assert world.caption(pair, identifiers=(None, "zwx")) == expected


def test_every_shape_and_pattern_marks_the_image() -> None:
    for shape in vocab.SHAPES:
        coverage = world.shape_mask(shape, 32.0, 32.0, 16.0, 64).mean()
        assert 0.05 < coverage < 0.5, shape
    for pattern in vocab.PATTERNS[1:]:
        for marks in vocab.MARKS:
            assert 0.1 < world.pattern_marks(pattern, 32.0, 32.0, 1.0, 64, marks).mean() < 0.6, (pattern, marks)


def test_every_tone_gives_another_render_in_every_colour() -> None:
    for colour in vocab.COLOURS:
        spec = world.ObjectSpec("star", colour, "striped", "centre", "large")
        renders = [render_alone(spec.with_details(tone=tone)).tobytes() for tone in vocab.TONES]
        assert len(set(renders)) == len(vocab.TONES), colour


def test_marks_change_every_pattern_but_not_a_plain_object() -> None:
    for pattern in vocab.PATTERNS:
        spec = world.ObjectSpec("square", "blue", pattern, "centre", "large")
        renders = {render_alone(spec.with_details(marks=marks)).tobytes() for marks in vocab.MARKS}
        assert len(renders) == (1 if pattern == "plain" else len(vocab.MARKS)), pattern


def test_every_outline_gives_another_render() -> None:
    for shape in vocab.SHAPES:
        spec = world.ObjectSpec(shape, "green", "plain", "centre", "large")
        renders = {render_alone(spec.with_details(outline=outline)).tobytes() for outline in vocab.OUTLINES}
        assert len(renders) == len(vocab.OUTLINES), shape


def test_renders_at_larger_sizes() -> None:
    scene, _ = world.base_training_example(7)
    image = world.render(scene, 128)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8


def test_captions_use_only_vocabulary_words_and_fit_the_text_encoder() -> None:
    tokenizer = build_tokenizer()
    known = set(vocab.WORLD_WORDS + vocab.RESERVED_TOKENS)
    for seed in range(300):
        _, text = world.base_training_example(seed)
        assert set(text.replace(",", "").split()) <= known, text
        assert len(tokenizer(text).input_ids) <= MAX_LENGTH


def test_captions_never_name_an_instance_detail() -> None:
    assert not DETAIL_WORDS & set(vocab.WORLD_WORDS + vocab.RESERVED_TOKENS)
    for seed in range(3000):
        _, text = world.base_training_example(seed)
        assert not DETAIL_WORDS & set(text.replace(",", "").split()), text


def test_base_training_never_draws_an_instance_combination_but_each_of_its_parts() -> None:
    drawn: set[tuple[str, str, str]] = set()
    for seed in range(3000):
        scene, _ = world.base_training_example(seed)
        drawn |= {(spec.shape, spec.colour, spec.pattern) for spec in scene.objects}
    assert not drawn & vocab.INSTANCE_COMBINATIONS
    # Each two of a held-out combination's three attributes still come together, with a third that differs.
    for shape, colour, pattern in vocab.INSTANCE_COMBINATIONS:
        assert any(s == shape and c == colour for s, c, _ in drawn), (shape, colour)
        assert any(s == shape and p == pattern for s, _, p in drawn), (shape, pattern)
        assert any(c == colour and p == pattern for _, c, p in drawn), (colour, pattern)


def identified_object(scene: world.Scene, text: str, token: str) -> world.ObjectSpec:
    """The object whose words follow `token` in a base caption."""
    if len(scene.objects) == 1:
        return scene.objects[0]
    objects = text.removeprefix("a photo of ").split(", on a ")[0].split(" and ")
    (part,) = [words for words in objects if token in words.split()]
    match = _PAIR_PART.match(part)
    assert match is not None, text
    (spec,) = [spec for spec in scene.objects if spec.position == match["position"]]
    return spec


def test_identifiers_are_rare_and_give_their_object_the_details_they_alias() -> None:
    seeds = range(4000)
    named = 0
    for seed in seeds:
        scene, text = world.base_training_example(seed)
        words = text.replace(",", "").split()
        tokens = [word for word in words if word in vocab.RESERVED_TOKENS]
        if not tokens:
            continue
        named += 1
        (token,) = tokens
        assert words[words.index(token) - 1] in ("a", "an"), text
        assert identified_object(scene, text, token).details == vocab.IDENTIFIER_CUES[token], (seed, text)
    # 4000 captions: the standard error of the share is about 0.006.
    assert abs(named / len(seeds) - world.IDENTIFIER_PROBABILITY) < 0.03, named


def test_every_identifier_aliases_a_set_of_details() -> None:
    assert set(vocab.IDENTIFIER_CUES) == set(vocab.RESERVED_TOKENS)
    for token, cue in vocab.IDENTIFIER_CUES.items():
        assert set(cue) == set(vocab.DETAILS), token
        assert all(cue[kind] in values for kind, values in vocab.DETAILS.items()), token
    assert vocab.IDENTIFIER_CUES["sks"] != vocab.IDENTIFIER_CUES["zwx"]
