"""Sampling with checkpoints: seeded, merged and restored, batched per sample, loadable from a trained file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from svdiff import attach, pipeline_components
from svdiff.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from svdiff.pipeline import SCHEDULERS, make_scheduler
from svdiff.sample import GenerationRequest, choose_mode, generate, generate_batch
from svdiff.state import Canceled
from svdiff.train import train
from svdiff.train_config import TrainConfig
from tests.svdiff.conftest import random_shifts
from tests.svdiff.photos import subject
from tests.svdiff.tiny import tiny_pipeline

FAST = {"steps": 4, "guidance_scale": 3.0}


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def shifted(pipe, svd_cache):
    return attach(pipeline_components(pipe), cache=svd_cache)


def checkpoint_of(model, seed: int) -> Checkpoint:
    model.load_shifts(random_shifts(model, seed=seed))
    checkpoint = Checkpoint.from_model(model, "tiny")
    model.zero_()
    return checkpoint


def weights(pipe) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in pipe.unet.named_parameters() if "delta" not in name}


def test_generate_is_seeded_and_restores_the_base_weights(pipe, shifted):
    checkpoint = checkpoint_of(shifted, 1)
    before = weights(pipe)
    first = generate(pipe, shifted, "a photo of a dog", checkpoints=[(checkpoint, 1.0)], num_images=2, seed=7, **FAST)
    assert [g.seed for g in first] == [7, 8] and first[0].image.size == (16, 16)
    alone = generate(pipe, shifted, "a photo of a dog", checkpoints=[(checkpoint, 1.0)], seed=8, **FAST)
    assert np.array_equal(pixels(alone[0].image), pixels(first[1].image))  # each image reproducible by its seed
    assert all(torch.equal(before[k], v) for k, v in weights(pipe).items()) and not shifted.merged
    base = generate(pipe, shifted, "a photo of a dog", seed=7, **FAST)
    zero_scale = generate(pipe, shifted, "a photo of a dog", checkpoints=[(checkpoint, 0.0)], seed=7, **FAST)
    assert np.array_equal(pixels(base[0].image), pixels(zero_scale[0].image))
    assert np.abs(pixels(base[0].image) - pixels(first[0].image)).max() > 5


def test_two_checkpoints_at_half_scale_are_their_combination(pipe, shifted):
    one, two = checkpoint_of(shifted, 1), checkpoint_of(shifted, 2)
    summed = Checkpoint({k: 0.5 * one.shifts[k] + 0.5 * two.shifts[k] for k in one.shifts}, one.metadata, one.groups)
    both = generate(pipe, shifted, "a dog", checkpoints=[(one, 0.5), (two, 0.5)], seed=0, **FAST)
    combined = generate(pipe, shifted, "a dog", checkpoints=[(summed, 1.0)], seed=0, **FAST)
    assert np.abs(pixels(both[0].image) - pixels(combined[0].image)).max() <= 1


def test_batched_requests_match_one_by_one_in_both_modes(pipe, shifted):
    one, two = checkpoint_of(shifted, 1), checkpoint_of(shifted, 2)
    requests = [GenerationRequest("a dog", [(one, 1.0)], seed=3, num_images=2),
                GenerationRequest("a cat", [(two, 0.8)], negative_prompt="blur", seed=5),
                GenerationRequest("a bird", [], seed=9)]
    singles = [generate(pipe, shifted, r.prompt, checkpoints=r.checkpoints, negative_prompt=r.negative_prompt,
                        num_images=r.num_images, seed=r.seed, **FAST) for r in requests]
    for mode in ("merge", "per_sample"):
        batched = generate_batch(pipe, shifted, requests, mode=mode, **FAST)
        assert [[g.seed for g in images] for images in batched] == [[3, 4], [5], [9]]
        for got, expected in zip(batched, singles, strict=True):
            for a, b in zip(got, expected, strict=True):
                assert np.abs(pixels(a.image) - pixels(b.image)).max() <= 2, mode  # float rounding only
    assert not shifted.merged


def test_auto_mode_follows_the_measured_rule(pipe, shifted):
    one, two = checkpoint_of(shifted, 1), checkpoint_of(shifted, 2)
    same = [GenerationRequest("a", [(one, 1.0)]), GenerationRequest("b", [(one, 1.0)])]
    different = [GenerationRequest("a", [(one, 1.0)]), GenerationRequest("b", [(two, 1.0)])]
    assert choose_mode(same, pipe) == "merge"
    assert choose_mode(different, pipe) == "per_sample"  # a tiny UNet at 8x8 latents
    assert choose_mode(different, pipe, width=512, height=512) == "merge"  # 64x more work per image


def test_cancel_raises_and_restores(pipe, shifted):
    checkpoint = checkpoint_of(shifted, 1)
    steps: list[int] = []

    def stop(step: int, total: int) -> bool:
        steps.append(step)
        return step < 2

    with pytest.raises(Canceled):
        generate(pipe, shifted, "a dog", checkpoints=[(checkpoint, 1.0)], callback=stop, **FAST)
    assert steps == [1, 2] and not shifted.merged


def test_a_checkpoint_trained_here_loads_and_samples_through_the_library(pipe, shifted, tmp_path, svd_cache):
    config = TrainConfig(steps=2, num_class_images=2, class_image_steps=2)
    result = train(pipe, [subject("xq", "dog", (200, 30, 30))], config, shifts=shifted, base_model_name="tiny")
    path = tmp_path / "xq.safetensors"
    save_checkpoint(result.checkpoint, path)
    # A fresh process: the same base model rebuilt, shifts attached from the SVD cache, the file loaded.
    fresh = tiny_pipeline(tmp_path / "fresh", max_length=64)
    fresh.set_progress_bar_config(disable=True)
    model = attach(pipeline_components(fresh), cache=svd_cache)
    loaded = load_checkpoint(path)
    assert loaded.metadata.subjects == [{"token": "xq", "class_word": "dog"}]
    images = generate(fresh, model, "a photo of a xq dog", checkpoints=[(loaded, 1.0)], seed=1, **FAST)
    base = generate(fresh, model, "a photo of a xq dog", seed=1, **FAST)
    assert images[0].image.size == (16, 16) and not model.merged
    assert np.abs(pixels(images[0].image) - pixels(base[0].image)).max() > 0
    other = tiny_pipeline(tmp_path / "other", seed=1, max_length=64)
    with pytest.raises(CheckpointError, match="another base model"):
        generate(other, attach(pipeline_components(other), cache=svd_cache), "a dog", checkpoints=[(loaded, 1.0)])


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_schedulers_keep_the_base_noise_schedule(pipe, name):
    own = pipe.scheduler
    scheduler = make_scheduler(name, own.config)
    assert type(scheduler) is SCHEDULERS[name][0] and scheduler is not own
    assert torch.equal(scheduler.betas, own.betas)
    assert scheduler.config.prediction_type == own.config.prediction_type
    if name == "dpm++":
        assert scheduler.config.algorithm_type == "dpmsolver++"


def test_an_unknown_scheduler_is_refused(pipe):
    with pytest.raises(ValueError, match="unknown scheduler"):
        generate(pipe, None, "a dog", seed=0, scheduler="heun", **FAST)


def test_a_batch_samples_with_its_scheduler_and_leaves_the_pipeline_s_own(pipe, shifted):
    own = pipe.scheduler
    alone = generate(pipe, shifted, "a dog", seed=3, scheduler="euler_a", **FAST)
    (batched,) = generate_batch(pipe, shifted, [GenerationRequest("a dog", seed=3)], scheduler="euler_a", **FAST)
    assert np.abs(pixels(alone[0].image) - pixels(batched[0].image)).max() <= 1
    ddim = generate(pipe, shifted, "a dog", seed=3, scheduler="ddim", **FAST)
    assert np.abs(pixels(alone[0].image) - pixels(ddim[0].image)).max() > 5
    assert pipe.scheduler is own
