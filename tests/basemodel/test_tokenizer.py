from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from basemodel import BASE_MODEL_PATH, vocab, world
from basemodel.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> CLIPTokenizer:
    return build_tokenizer()


def test_every_world_word_and_reserved_token_is_one_token(tokenizer: CLIPTokenizer) -> None:
    for word in vocab.WORLD_WORDS + vocab.RESERVED_TOKENS:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word


def test_reserved_tokens_are_many_distinct_and_in_captions_only_as_identifiers() -> None:
    assert len(set(vocab.RESERVED_TOKENS)) == len(vocab.RESERVED_TOKENS) >= 16
    assert not set(vocab.RESERVED_TOKENS) & set(vocab.WORLD_WORDS)
    for seed in range(2000):
        words = world.base_training_example(seed)[1].replace(",", "").split()
        at = [i for i, word in enumerate(words) if word in vocab.RESERVED_TOKENS]
        # At most one object per caption is named, right after its article.
        assert len(at) <= 1 and all(words[i - 1] in ("a", "an") for i in at), words


def test_free_reserved_token_skips_used_ones() -> None:
    assert vocab.free_reserved_token() == vocab.RESERVED_TOKENS[0]
    assert vocab.free_reserved_token({vocab.RESERVED_TOKENS[0]}) == vocab.RESERVED_TOKENS[1]
    with pytest.raises(LookupError):
        vocab.free_reserved_token(set(vocab.RESERVED_TOKENS))


def test_shipped_tokenizer_matches_the_builder(tokenizer: CLIPTokenizer, tmp_path: Path) -> None:
    shipped = CLIPTokenizer.from_pretrained(BASE_MODEL_PATH / "tokenizer")
    text = "a photo of sks star, an orange checkered moon on the left and a heart"
    assert shipped(text).input_ids == tokenizer(text).input_ids
    assert shipped.model_max_length == tokenizer.model_max_length
