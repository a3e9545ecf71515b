"""The base's noise schedule: zero terminal SNR, v prediction, and sampling that starts where training's noisiest
step is, so that nothing of a training image survives at the step where the layout is decided."""

import pytest
import torch

from basemodel.models import make_sample_scheduler, make_train_scheduler
from basemodel.train_unet import min_snr_weights


def test_the_noisiest_training_step_keeps_nothing_of_the_latents() -> None:
    scheduler = make_train_scheduler()
    latents, noise = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    last = torch.tensor([scheduler.config.num_train_timesteps - 1] * 2)
    assert scheduler.alphas_cumprod[-1].item() == 0.0
    assert torch.allclose(scheduler.add_noise(latents, noise, last), noise)
    assert scheduler.config.prediction_type == "v_prediction"


def test_the_rest_of_the_schedule_stays_close_to_stable_diffusions() -> None:
    # Rescaling only lowers the noisiest end: the middle of SD v1's schedule (0.276 at t=500) moves to 0.241.
    alphas = make_train_scheduler().alphas_cumprod
    assert alphas[0].item() == pytest.approx(0.99915, abs=1e-4)
    assert 0.22 < alphas[500].item() < 0.28


def test_sampling_starts_at_the_zero_snr_step() -> None:
    scheduler = make_sample_scheduler()
    scheduler.set_timesteps(20)
    assert int(scheduler.timesteps[0]) == scheduler.config.num_train_timesteps - 1
    assert scheduler.config.prediction_type == make_train_scheduler().config.prediction_type


def test_v_weights_keep_the_zero_snr_step_and_cap_the_clean_ones() -> None:
    alphas = make_train_scheduler().alphas_cumprod
    weights = min_snr_weights(alphas, 5.0, "v_prediction")
    snr = alphas / (1 - alphas)
    assert weights[-1].item() == pytest.approx(1.0)
    assert bool((weights > 0).all())
    # Clean steps (SNR above gamma) weigh less than noisy ones, as Min-SNR caps them.
    assert bool((weights[snr > 5.0] < weights[-1]).all())


def test_an_unknown_target_has_no_weights() -> None:
    with pytest.raises(ValueError, match="sample"):
        min_snr_weights(make_train_scheduler().alphas_cumprod, 5.0, "sample")
