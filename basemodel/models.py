"""Configurations of the tiny Stable Diffusion components, sized for a from-scratch build on a 2-core CPU."""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from basemodel.tokenizer import MAX_LENGTH
from basemodel.world import FRAME

LATENT_CHANNELS = 4
VAE_DOWNSAMPLE = 4  # 64x64 images -> 16x16 latents: fine enough to keep 8-pixel patterns
LATENT_SIZE = FRAME // VAE_DOWNSAMPLE
TEXT_WIDTH = 128

# Stable Diffusion v1's betas, rescaled to zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and
# Sample Steps are Flawed"). Unrescaled, the noisiest training input still keeps 6.8% of the latents, enough on a
# 16x16 latent for the UNet to read an object's place from the noise instead of from the prompt: samples put the
# object where the initial noise has a blob, whatever the position words say. At zero SNR the epsilon target carries
# no information, so the UNet predicts v (as Stable Diffusion 2 does), and sampling starts at the last timestep.
SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}  # fmt: skip


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=FRAME,
        mid_block_add_attention=False,
    )


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        # Attention only at 8x8 and 4x4: at 16x16 it would cost more than the rest of the network on a CPU.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(64, 128, 128),
        layers_per_block=1,
        attention_head_dim=4,  # diffusers reads this as the number of heads
        cross_attention_dim=TEXT_WIDTH,
        norm_num_groups=32,
    )


def make_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def make_train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULE)


def make_sample_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")
