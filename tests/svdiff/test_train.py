"""Training on the tiny pipeline: the loss falls, runs resume exactly, cancel is prompt, caches and state are clean."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.models.attention_processor import AttnProcessor2_0

from svdiff import SpectralShiftModel, attach, pipeline_components
from svdiff.checkpoint import deserialize, serialize
from svdiff.data import prepare_images
from svdiff.loop import denoising_inputs, encode_prompts, make_optimizer, trainable_layers
from svdiff.state import TrainState, TrainStateError
from svdiff.train import train
from svdiff.train_config import TrainConfig, TrainConfigError
from tests.svdiff.conftest import random_shifts
from tests.svdiff.photos import subject
from tests.svdiff.test_prior import CountingCache

DOG = subject("xq", "dog", (200, 30, 30))
CAT = subject("zv", "cat", (30, 30, 200), seed=10)
SMALL = {"num_class_images": 2, "class_image_steps": 2}


@pytest.fixture
def model(pipe, svd_cache) -> SpectralShiftModel:
    return attach(pipeline_components(pipe), cache=svd_cache)


@torch.no_grad()
def fixed_loss(pipe, pixels: torch.Tensor, prompt: str) -> float:
    """The denoising loss over 8 fixed draws of noise and timesteps."""
    generator = torch.Generator().manual_seed(123)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    embeds = encode_prompts(pipe, [prompt] * pixels.shape[0], grad=False)
    total = 0.0
    for _ in range(8):
        noisy, timesteps, target = denoising_inputs(pipe, scheduler, pixels, generator)
        total += (pipe.unet(noisy, timesteps, embeds).sample - target).square().mean().item()
    return total / 8


def test_loss_falls_on_a_fixed_subject(pipe, model):
    pixels = prepare_images(DOG.images, 16)
    before = fixed_loss(pipe, pixels, "a photo of a xq dog")
    result = train(pipe, [DOG], TrainConfig(steps=20, lr=1e-2, prior_preservation=False), shifts=model)
    model.load_shifts(result.checkpoint.shifts, strict=False)
    after = fixed_loss(pipe, pixels, "a photo of a xq dog")
    assert after < 0.95 * before  # measured: 1.109 -> 0.991
    assert len(result.losses) == 20 and not result.canceled and result.step == 20


def test_resumed_run_ends_with_the_shifts_of_an_uninterrupted_one(pipe, model, tmp_path):
    config = TrainConfig(steps=6, checkpoint_every=3, lr=1e-2, seed=5, **SMALL)
    cache = CountingCache(tmp_path / "prior")
    states: list[bytes] = []
    full = train(pipe, [DOG, CAT], config, shifts=model, prior_cache=cache,
                 on_state=lambda state: states.append(state.to_bytes()))
    assert len(states) == 1  # at step 3; none at the final step
    resumed = train(pipe, [DOG, CAT], config, shifts=model, prior_cache=cache, resume=states[0])
    assert resumed.losses == full.losses and resumed.step == 6
    for key, value in full.checkpoint.shifts.items():
        torch.testing.assert_close(resumed.checkpoint.shifts[key], value, rtol=0, atol=1e-7)
    assert any(v.abs().max() > 0 for v in full.checkpoint.shifts.values())
    again = train(pipe, [DOG, CAT], config, shifts=model, prior_cache=cache)  # same seed, same shifts
    assert all(torch.equal(again.checkpoint.shifts[k], v) for k, v in full.checkpoint.shifts.items())


def test_a_state_from_another_base_model_is_refused(pipe, model):
    state = TrainState(step=1, shifts={}, optimizer={}, generator=torch.Generator().get_state(), fingerprint="other")
    with pytest.raises(TrainStateError, match="another base model"):
        train(pipe, [DOG], TrainConfig(steps=2, prior_preservation=False), shifts=model, resume=state.to_bytes())
    with pytest.raises(TrainStateError, match="not a readable"):
        TrainState.from_bytes(b"junk")


def test_cancel_stops_within_one_step_and_leaves_the_model_clean(pipe, model):
    seen: list[int] = []

    def stop_at_two(progress) -> bool:
        seen.append(progress.step)
        assert progress.total == 50 and progress.elapsed > 0
        return progress.step < 2

    result = train(pipe, [DOG], TrainConfig(steps=50, prior_preservation=False), shifts=model, callback=stop_at_two)
    assert result.canceled and result.step == 2 and seen == [1, 2] and result.state.step == 2
    assert all(not delta.any() for delta in model.parameters()) and not model.merged


def test_class_images_are_generated_once_for_two_subjects_of_one_class(pipe, model, tmp_path):
    cache = CountingCache(tmp_path / "prior")
    other_dog = subject("jk", "dog", (30, 200, 30), seed=20)
    config = TrainConfig(steps=1, num_class_images=3, class_image_steps=2)
    first = train(pipe, [DOG], config, shifts=model, prior_cache=cache)
    second = train(pipe, [other_dog], config, shifts=model, prior_cache=cache)
    assert first.class_images_generated == 3 and second.class_images_generated == 0
    assert len(cache.puts) == 3 and all("/dog/3/" in key for key in cache.puts)


def test_a_resident_model_is_trained_from_zero_and_handed_back_clean(pipe, model):
    model.merge(random_shifts(model))  # a worker that left a subject merged...
    model.load_shifts(random_shifts(model, seed=3))  # ...and junk in the deltas
    flags = [p.requires_grad for p in model.parameters()]
    config = TrainConfig(steps=2, train_text_encoder=False, **SMALL)
    result = train(pipe, [DOG], config, shifts=model)
    assert not model.merged and all(not delta.any() for delta in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags and all(p.grad is None for p in model.parameters())
    shifts = result.checkpoint.shifts
    assert shifts and all(key.startswith("unet.") for key in shifts)  # text encoder untrained, left out
    assert max(v.abs().max().item() for v in shifts.values()) < 3 * config.lr  # from zero, 2 Adam steps


def test_checkpoint_records_subjects_and_settings(pipe, model):
    config = TrainConfig(steps=2, **SMALL)
    result = train(pipe, [DOG, CAT], config, shifts=model, base_model_name="tiny")
    loaded = deserialize(serialize(result.checkpoint))
    meta = loaded.metadata
    assert meta.base_model == "tiny" and meta.base_fingerprints == model.stats.fingerprints
    assert meta.subjects == [{"token": "xq", "class_word": "dog"}, {"token": "zv", "class_word": "cat"}]
    assert meta.training["steps"] == 2 and meta.training["mix_probability"] == 0.6
    assert meta.training["shift_config"] == model.config.to_dict() and meta.training["step"] == 2
    assert set(loaded.shifts) == set(model.layers)
    assert any(v.abs().max() > 0 for k, v in loaded.shifts.items() if k.startswith("text_encoder."))


def test_without_a_resident_model_the_pipeline_is_left_as_it_was(pipe, svd_cache):
    before = {name: type(module) for name, module in pipe.unet.named_modules()}
    for _ in range(2):  # a second run attaches again: nothing was left behind
        result = train(pipe, [DOG], TrainConfig(steps=1, prior_preservation=False), svd_cache=svd_cache)
        assert result.checkpoint.num_values() > 0
    assert {name: type(module) for name, module in pipe.unet.named_modules()} == before


def test_cut_mix_unmix_run_restores_the_attention_processors(pipe, model):
    config = TrainConfig(steps=3, mix_probability=1.0, unmix_weight=1.0, unmix_min_downsample=1, **SMALL)
    result = train(pipe, [DOG, CAT], config, shifts=model)
    without = train(pipe, [DOG, CAT], replace(config, unmix_weight=0.0), shifts=model)
    # Every step is a collage: the unmix term (0 to 4, about 1 for a random model) adds to each step's loss.
    assert all(0.1 < a - b < 4 for a, b in zip(result.losses, without.losses, strict=True))
    # Checkpointing recomputes the captured attention in backward: same operations, nothing recorded twice.
    checkpointed = train(pipe, [DOG, CAT], replace(config, gradient_checkpointing=True), shifts=model)
    assert checkpointed.losses == pytest.approx(result.losses, rel=1e-5)
    assert {type(p) for p in pipe.unet.attn_processors.values()} == {AttnProcessor2_0}


def test_gradient_checkpointing_and_bf16_match_the_plain_run_closely(pipe, model):
    plain = train(pipe, [DOG], TrainConfig(steps=2, prior_preservation=False), shifts=model)
    checkpointed = train(pipe, [DOG], TrainConfig(steps=2, prior_preservation=False, gradient_checkpointing=True),
                         shifts=model)
    assert checkpointed.losses == pytest.approx(plain.losses, rel=1e-5)
    assert not pipe.unet.is_gradient_checkpointing
    bf16 = train(pipe, [DOG], TrainConfig(steps=2, prior_preservation=False, mixed_precision="bf16"), shifts=model)
    assert bf16.losses == pytest.approx(plain.losses, rel=0.05)
    assert all(v.dtype == torch.float32 for v in bf16.checkpoint.shifts.values())


def test_invalid_settings_are_refused(pipe, model):
    with pytest.raises(TrainConfigError, match="distinct"):
        train(pipe, [DOG, DOG], TrainConfig(steps=1), shifts=model)
    with pytest.raises(TrainConfigError, match="1 to 3"):
        train(pipe, [DOG, CAT, subject("a", "b", (0, 0, 0)), subject("c", "d", (0, 0, 0))], shifts=model)
    with pytest.raises(TrainConfigError, match="CUDA"):
        train(pipe, [DOG], TrainConfig(steps=1, prior_preservation=False, mixed_precision="fp16"), shifts=model)


def test_text_encoder_shifts_learn_at_their_own_rate(pipe, model):
    keys = trainable_layers(model, TrainConfig())
    optimizer = make_optimizer(model, keys, TrainConfig(lr=1e-3, lr_text=5e-2))
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert groups["text_matrix"]["lr"] == 5e-2 and groups["matrix"]["lr"] == 1e-3
    text = {id(model.layers[k].delta) for k in keys if k.startswith("text_encoder.")}
    assert {id(p) for p in groups["text_matrix"]["params"]} <= text
    assert not {id(p) for p in groups["matrix"]["params"]} & text
    default = {group["name"] for group in make_optimizer(model, keys, TrainConfig()).param_groups}
    assert "text_matrix" not in default
