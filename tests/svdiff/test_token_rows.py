"""Token rows: an identifier's own embedding offset, trained beside the spectral shifts (TrainConfig.token_rows)."""

from __future__ import annotations

import pytest
import torch

from svdiff import SpectralShiftModel, attach, pipeline_components
from svdiff.checkpoint import deserialize, serialize
from svdiff.lora import export_lora
from svdiff.model import ShiftMismatchError, row_key, split_row_key
from svdiff.train import identifier_ids, train
from svdiff.train_config import TrainConfig, TrainConfigError
from tests.svdiff.conftest import random_shifts
from tests.svdiff.photos import subject
from tests.svdiff.test_prior import CountingCache

DOG = subject("xq", "dog", (200, 30, 30))
CAT = subject("zv", "cat", (30, 30, 200), seed=10)
ROWS = {"token_rows": True, "lr_rows": 1e-2, "prior_preservation": False}


@pytest.fixture
def model(pipe, svd_cache) -> SpectralShiftModel:
    return attach(pipeline_components(pipe), cache=svd_cache)


def encode(pipe, prompts: list[str]) -> torch.Tensor:
    ids = pipe.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def with_rows(model: SpectralShiftModel, pipe, token: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random shifts plus random rows for `token`'s ids."""
    generator = torch.Generator().manual_seed(seed + 100)
    shifts = random_shifts(model, seed=seed)
    key = model.input_embedding_key()
    width = model.layers[key].embedding_dim
    for token_id in pipe.tokenizer(token, add_special_tokens=False).input_ids:
        shifts[row_key(key, token_id)] = torch.randn(width, generator=generator)
    return shifts


def test_training_learns_one_row_per_identifier_token_and_hands_the_model_back_clean(pipe, model):
    result = train(pipe, [DOG], TrainConfig(steps=5, **ROWS), shifts=model)
    rows = {k: v for k, v in result.checkpoint.shifts.items() if split_row_key(k) is not None}
    ids = pipe.tokenizer("xq", add_special_tokens=False).input_ids
    assert len(ids) == 2  # the tiny tokenizer spells per character: both tokens get a row
    assert sorted(split_row_key(k)[1] for k in rows) == sorted(ids)  # type: ignore[index]
    assert all(v.abs().max() > 0 for v in rows.values())
    assert {result.checkpoint.groups[k] for k in rows} == {"rows"}
    assert model.token_rows() == {}  # no rows left on the resident model
    assert not any(layer.delta.abs().max() > 0 for layer in model.layers.values())


def test_without_token_rows_the_checkpoint_has_none(pipe, model):
    result = train(pipe, [DOG], TrainConfig(steps=2, prior_preservation=False), shifts=model)
    assert not any(split_row_key(k) for k in result.checkpoint.shifts)


def test_rows_survive_serialization_and_count_in_the_file(pipe, model):
    result = train(pipe, [DOG], TrainConfig(steps=3, **ROWS), shifts=model)
    data = serialize(result.checkpoint, dtype="float32")
    loaded = deserialize(data)
    assert loaded.shifts.keys() == result.checkpoint.shifts.keys()
    for key, value in result.checkpoint.shifts.items():
        assert torch.equal(loaded.shifts[key], value)
    assert loaded.groups[next(k for k in loaded.shifts if "#" in k)] == "rows"


def test_merged_rows_give_the_unmerged_output_and_restore_gives_the_base_back(pipe, model):
    shifts = with_rows(model, pipe, "xq")
    prompts = ["a xq dog", "a dog"]
    base = encode(pipe, prompts)
    model.load_shifts(shifts, strict=False)
    unmerged = encode(pipe, prompts)
    model.zero_()
    model.drop_token_rows()
    model.merge(shifts)
    merged = encode(pipe, prompts)
    model.restore()
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)
    assert torch.equal(encode(pipe, prompts), base)


def test_a_row_moves_only_prompts_with_its_token(pipe, model):
    key = model.input_embedding_key()
    ids = pipe.tokenizer("xq", add_special_tokens=False).input_ids
    rows = {row_key(key, i): torch.ones(model.layers[key].embedding_dim) for i in ids}
    base = encode(pipe, ["a xq dog", "a dog"])
    model.merge(rows)
    shifted = encode(pipe, ["a xq dog", "a dog"])
    model.restore()
    assert not torch.allclose(shifted[0], base[0])
    assert torch.equal(shifted[1], base[1])


def test_per_sample_rows_equal_each_sample_merged_alone(pipe, model):
    first, second = with_rows(model, pipe, "xq", seed=1), with_rows(model, pipe, "zv", seed=2)
    prompts = ["a xq dog", "a zv cat", "a xq dog"]
    expected = []
    for prompt, shifts in zip(prompts, (first, second, None), strict=True):
        model.merge(shifts or {})
        expected.append(encode(pipe, [prompt])[0])
        model.restore()
    with model.per_sample([first, second, None]):
        batched = encode(pipe, prompts)
    torch.testing.assert_close(batched, torch.stack(expected), rtol=1e-4, atol=1e-5)
    embedding = model.layers[model.input_embedding_key()]
    assert embedding.per_sample_rows is None  # type: ignore[union-attr]


def test_a_resumed_run_with_rows_ends_where_an_uninterrupted_one_does(pipe, model, tmp_path):
    config = TrainConfig(steps=6, checkpoint_every=3, seed=3, **ROWS)
    cache = CountingCache(tmp_path / "prior")
    states: list[bytes] = []
    full = train(pipe, [DOG, CAT], config, shifts=model, prior_cache=cache,
                 on_state=lambda state: states.append(state.to_bytes()))
    resumed = train(pipe, [DOG, CAT], config, shifts=model, prior_cache=cache, resume=states[0])
    assert resumed.losses == full.losses
    assert resumed.checkpoint.shifts.keys() == full.checkpoint.shifts.keys()
    for key, value in full.checkpoint.shifts.items():
        torch.testing.assert_close(resumed.checkpoint.shifts[key], value, rtol=0, atol=1e-7)
    assert sum("#" in k for k in full.checkpoint.shifts) == len(identifier_ids(pipe, [DOG, CAT])) == 4


def test_rows_that_do_not_fit_are_refused(pipe, model):
    key = model.input_embedding_key()
    width, vocab = model.layers[key].embedding_dim, model.layers[key].num_embeddings
    with pytest.raises(ShiftMismatchError, match="no token"):
        model.check({row_key(key, vocab): torch.zeros(width)}, strict=False)
    with pytest.raises(ShiftMismatchError, match="shape"):
        model.check({row_key(key, 5): torch.zeros(width + 1)}, strict=False)
    linear = next(k for k in model.layers if k.startswith("unet.") and "to_q" in k)
    with pytest.raises(ShiftMismatchError, match="token embedding"):
        model.check({row_key(linear, 5): torch.zeros(width)}, strict=False)
    with pytest.raises(ShiftMismatchError, match="token id"):
        model.check({f"{key}#x": torch.zeros(width)}, strict=False)
    with pytest.raises(ValueError, match="non-finite"):
        model.merge({row_key(key, 5): torch.full((width,), float("nan"))})
    assert not model.merged


def test_token_rows_need_the_text_encoder(pipe, model):
    with pytest.raises(TrainConfigError, match="token_rows"):
        train(pipe, [DOG], TrainConfig(steps=1, train_text_encoder=False, **ROWS), shifts=model)
    with pytest.raises(TrainConfigError, match="lr_rows"):
        TrainConfig(lr_rows=-1.0).validate()


def test_lora_export_lists_rows_as_dropped(pipe, model):
    shifts = with_rows(model, pipe, "xq")
    export = export_lora(model, shifts, rank=2)
    assert any("#" in key for key in export.dropped)
    assert not any("#" in key for key in export.state_dict)


def test_sampling_merges_a_checkpoints_rows(pipe, model):
    """svdiff.sample.merged, the path of generate(): rows in the given shifts reach the weights (regression: it once
    merged only the layers' keys, so images ignored the rows)."""
    from svdiff.sample import merged

    shifts = with_rows(model, pipe, "xq")
    layers_only = {k: v for k, v in shifts.items() if split_row_key(k) is None}
    with merged(model, shifts):
        full = encode(pipe, ["a xq dog"])
    with merged(model, layers_only):
        without = encode(pipe, ["a xq dog"])
    assert not torch.allclose(full, without)
