"""Cut-Mix geometry, layouts and prompts for two and three subjects."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from svdiff.batches import SubjectPixels, subject_batch
from svdiff.cutmix import (
    SWAPPED_MIX_PROMPT,
    SWAPPED_PRIOR_MIX_PROMPT,
    collage,
    draw_layout,
    half_masks,
    layout_prompt,
    mix_prompt,
    prior_mix_prompt,
    subject_strip,
)
from svdiff.train_config import TrainConfig, TrainConfigError


@pytest.mark.parametrize("width", [16, 15])
def test_centre_collage_halves_are_the_centre_strips(width):
    left, right = torch.randn(3, 16, width), torch.randn(3, 16, width)
    mixed = collage(left, right, "centre")
    half = width // 2
    assert mixed.shape == left.shape
    start_left, start_right = (width - half) // 2, (width - (width - half)) // 2
    assert torch.equal(mixed[..., :half], left[..., start_left : start_left + half])
    assert torch.equal(mixed[..., half:], right[..., start_right : start_right + width - half])
    if width == 16:  # even width: columns 4..11 of each image
        assert torch.equal(mixed[..., :8], left[..., 4:12]) and torch.equal(mixed[..., 8:], right[..., 4:12])


def _photo(background: torch.Tensor, left: int, width: int = 6) -> torch.Tensor:
    """(3, 16, 16): `background` with a bright square in columns [left, left + width), rows 5 to 10."""
    image = background.clone()
    image[:, 5:11, left : left + width] = 1.0
    return image


@pytest.mark.parametrize("left", [0, 2, 5, 10])
def test_the_subject_strip_holds_an_off_centre_subject_whole(left):
    background = torch.full((3, 16, 16), -0.5)
    photo = _photo(background, left)
    strip = subject_strip(photo, 8)
    assert strip.shape == (3, 16, 8)
    assert int((strip == 1.0).sum()) == int((photo == 1.0).sum())  # every subject pixel is in the strip


def test_the_subject_strip_finds_the_subject_on_a_textured_background():
    texture = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.6 - 0.8
    photo = _photo(texture, 9)
    assert int((subject_strip(photo, 8) == 1.0).sum()) == int((photo == 1.0).sum())


def test_without_a_subject_the_strip_is_the_centre_one():
    plain = torch.randn(3, 16, 1).expand(3, 16, 15)  # every column alike
    assert torch.equal(subject_strip(plain, 8), plain[..., 3:11])


def test_a_subject_collage_keeps_both_subjects_whole_where_the_centre_one_cuts_them():
    background = torch.full((3, 16, 16), -0.5)
    left, right = _photo(background, 9), _photo(background, 1)  # subjects right and left of centre
    whole = int((left == 1.0).sum()) + int((right == 1.0).sum())
    assert int((collage(left, right) == 1.0).sum()) == whole
    assert int((collage(left, right, "centre") == 1.0).sum()) < whole


def test_an_unknown_collage_crop_is_refused():
    with pytest.raises(ValueError, match="crop"):
        collage(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), "random")  # type: ignore[arg-type]
    with pytest.raises(TrainConfigError, match="collage_crop"):
        TrainConfig(collage_crop="random").validate()  # type: ignore[arg-type]


def test_half_masks_split_columns_and_leave_an_odd_middle_to_neither():
    even = half_masks(2, 4)
    assert even[0].tolist() == [[1, 1, 0, 0]] * 2 and even[1].tolist() == [[0, 0, 1, 1]] * 2
    odd = half_masks(1, 5)
    assert odd[0].tolist() == [[1, 1, 0, 0, 0]] and odd[1].tolist() == [[0, 0, 0, 1, 1]]


@pytest.mark.parametrize("subjects", [2, 3])
def test_layouts_mix_with_the_given_probability_over_all_ordered_pairs(subjects):
    generator = torch.Generator().manual_seed(0)
    draws = [draw_layout(subjects, 0.6, generator) for _ in range(4000)]
    pairs = Counter(d for d in draws if len(d) == 2)
    singles = Counter(d for d in draws if len(d) == 1)
    assert abs(sum(pairs.values()) / len(draws) - 0.6) < 0.03
    assert all(left != right for left, right in pairs)
    assert set(pairs) == {(a, b) for a in range(subjects) for b in range(subjects) if a != b}
    expected = sum(pairs.values()) / (subjects * (subjects - 1))
    assert all(abs(count - expected) < 0.2 * expected for count in pairs.values())  # uniform over ordered pairs
    assert set(singles) == {(i,) for i in range(subjects)}


def test_one_subject_never_mixes():
    generator = torch.Generator().manual_seed(0)
    assert {draw_layout(1, 1.0, generator) for _ in range(50)} == {(0,)}


def test_prompts_for_two_and_three_subjects():
    subjects = [("xq", "dog"), ("zv", "cat"), ("jk", "dog")]
    assert mix_prompt(subjects[0], subjects[1]) == "a photo of a xq dog on the left and a zv cat on the right"
    assert layout_prompt((2, 0), subjects) == "a photo of a jk dog on the left and a xq dog on the right"
    assert layout_prompt((1,), subjects) == "a photo of a zv cat"
    assert prior_mix_prompt("cat", "dog") == "a photo of a cat on the left and a dog on the right"


def _solid(value: float, count: int = 2) -> torch.Tensor:
    return torch.full((count, 3, 8, 8), value)


def test_subject_batches_mix_instances_and_priors_the_same_way():
    """Each subject's photos (and its class's images) have their own value, so halves reveal their source."""
    data = [SubjectPixels(t, c, _solid(i / 10), _solid(0.5 + i / 10)) for i, (t, c) in
            enumerate([("xq", "dog"), ("zv", "cat"), ("jk", "bird")])]
    config = TrainConfig(batch_size=4, mix_probability=0.6, prior_weight=0.5)
    generator = torch.Generator().manual_seed(1)
    seen_collage = seen_single = False
    for _ in range(10):
        batch = subject_batch(data, config, generator)
        assert batch.pixels.shape == (8, 3, 8, 8) and len(batch.prompts) == 8
        assert batch.loss_weights.tolist() == [0.25] * 4 + [0.125] * 4
        for i, pair in enumerate(batch.pairs[:4]):
            instance, prior = batch.pixels[i], batch.pixels[4 + i]
            if pair is None:
                seen_single = True
                index = round(instance.mean().item() * 10)
                assert batch.prompts[i] == f"a photo of a {data[index].token} {data[index].class_word}"
                assert batch.prompts[4 + i] == f"a photo of a {data[index].class_word}"
                assert torch.allclose(prior, torch.full_like(prior, 0.5 + index / 10))
                continue
            seen_collage = True
            left, right = (round(instance[..., half].mean().item() * 10) for half in (slice(0, 4), slice(4, 8)))
            assert pair == (data[left].token, data[right].token) and left != right
            assert batch.prompts[i] == mix_prompt((data[left].token, data[left].class_word),
                                                  (data[right].token, data[right].class_word))
            assert batch.prompts[4 + i] == prior_mix_prompt(data[left].class_word, data[right].class_word)
            assert torch.allclose(prior[..., :4], torch.full_like(prior[..., :4], 0.5 + left / 10))
            assert torch.allclose(prior[..., 4:], torch.full_like(prior[..., 4:], 0.5 + right / 10))
        assert batch.pairs[4:] == [None] * 4
    assert seen_collage and seen_single


def test_prompt_templates_vary_the_instance_prompt_and_leave_priors_alone():
    data = [SubjectPixels("xq", "dog", _solid(0.1), _solid(0.6))]
    templates = ("a {token} {class_word}", "{token} {class_word}")
    config = TrainConfig(batch_size=4, prompt_templates=templates)
    generator = torch.Generator().manual_seed(3)
    prompts = [subject_batch(data, config, generator).prompts for _ in range(10)]
    assert {p[i] for p in prompts for i in range(4)} == {"a photo of a xq dog", "a xq dog", "xq dog"}
    assert {p[i] for p in prompts for i in range(4, 8)} == {"a photo of a dog"}


def test_without_templates_batches_are_the_papers_exactly():
    """No extra draw from the generator: a run without templates is the run it was before templates existed."""
    data = [SubjectPixels("xq", "dog", torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8))]
    plain = subject_batch(data, TrainConfig(), torch.Generator().manual_seed(4))
    empty = subject_batch(data, TrainConfig(prompt_templates=()), torch.Generator().manual_seed(4))
    assert torch.equal(plain.pixels, empty.pixels) and plain.prompts == empty.prompts == [
        "a photo of a xq dog", "a photo of a dog"]


def test_a_template_without_its_placeholders_is_refused():
    with pytest.raises(TrainConfigError, match="token"):
        TrainConfig(prompt_templates=("a photo of a dog",)).validate()
    with pytest.raises(TrainConfigError, match="lr_text"):
        TrainConfig(lr_text=-1.0).validate()


def test_mix_phrasings_name_collages_in_either_order_and_their_priors_alike():
    data = [SubjectPixels(t, c, _solid(i / 10), _solid(0.5 + i / 10)) for i, (t, c) in
            enumerate([("xq", "dog"), ("zv", "cat")])]
    config = TrainConfig(batch_size=4, mix_probability=1.0,
                         mix_phrasings=((SWAPPED_MIX_PROMPT, SWAPPED_PRIOR_MIX_PROMPT),))
    config.validate()
    generator = torch.Generator().manual_seed(2)
    seen = Counter()
    for _ in range(10):
        batch = subject_batch(data, config, generator)
        for i, pair in enumerate(batch.pairs[:4]):
            instance = batch.pixels[i]
            left, right = (round(instance[..., half].mean().item() * 10) for half in (slice(0, 4), slice(4, 8)))
            assert pair == (data[left].token, data[right].token)
            (lt, lc), (rt, rc) = (data[left].token, data[left].class_word), (data[right].token, data[right].class_word)
            swapped = batch.prompts[i] == f"a photo of a {rt} {rc} on the right and a {lt} {lc} on the left"
            assert swapped or batch.prompts[i] == f"a photo of a {lt} {lc} on the left and a {rt} {rc} on the right"
            # The prior collage is named in the instance's order, so both halves of a step agree.
            assert batch.prompts[4 + i] == (f"a photo of a {rc} on the right and a {lc} on the left" if swapped else
                                            f"a photo of a {lc} on the left and a {rc} on the right")
            seen[swapped] += 1
    assert seen[True] >= 10 and seen[False] >= 10


def test_without_mix_phrasings_collage_batches_are_as_before():
    """No extra draw: a two-subject run without phrasings is the run it was before they existed."""
    data = [SubjectPixels(t, "dog", torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)) for t in ("xq", "zv")]
    plain = subject_batch(data, TrainConfig(batch_size=4), torch.Generator().manual_seed(5))
    empty = subject_batch(data, TrainConfig(batch_size=4, mix_phrasings=()), torch.Generator().manual_seed(5))
    assert torch.equal(plain.pixels, empty.pixels) and plain.prompts == empty.prompts


def test_a_collage_phrasing_without_its_placeholders_is_refused():
    with pytest.raises(TrainConfigError, match="token_right"):
        TrainConfig(mix_phrasings=(("a photo of a {token_left} {class_left}", SWAPPED_PRIOR_MIX_PROMPT),)).validate()
    with pytest.raises(TrainConfigError, match="class_right"):
        TrainConfig(mix_phrasings=((SWAPPED_MIX_PROMPT, "a photo of a {class_left}"),)).validate()
    with pytest.raises(TrainConfigError, match="pair"):
        TrainConfig(mix_phrasings=((SWAPPED_MIX_PROMPT,),)).validate()  # type: ignore[arg-type]
