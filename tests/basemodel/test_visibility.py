"""How much a word moves the text encoder's output, on the shipped text encoder."""

import pytest
from diffusers import StableDiffusionPipeline

from basemodel.pipeline import load
from basemodel.visibility import Visibility, word_visibility


@pytest.fixture(scope="module")
def pipeline() -> StableDiffusionPipeline:
    return load()


def test_the_article_in_its_own_place_moves_nothing(pipeline: StableDiffusionPipeline) -> None:
    assert word_visibility(pipeline.text_encoder, pipeline.tokenizer, "a") == pytest.approx(0.0, abs=1e-6)


def test_a_colour_word_moves_the_states_after_it(pipeline: StableDiffusionPipeline) -> None:
    assert word_visibility(pipeline.text_encoder, pipeline.tokenizer, "red") > 0.0


def test_the_ratio_is_the_identifiers_mean_over_the_attribute_words_mean() -> None:
    visibility = Visibility(identifiers={"sks": 1.0, "zwx": 3.0}, attributes={"red": 4.0, "dotted": 4.0})
    assert visibility.ratio == pytest.approx(0.5)
