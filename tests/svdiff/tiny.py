"""Tiny dummy components, built from configs, for fast CPU tests (the diffusers habit)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

CONTEXT_DIM = 32


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CONTEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=8,
    ).eval()


def tiny_text_encoder(seed: int = 0, max_length: int = 12) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=64, hidden_size=CONTEXT_DIM, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=max_length, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def randomize_norms(*models: torch.nn.Module, seed: int = 1) -> None:
    """Fresh models have unit norm scales; random ones make the 1-D tests meaningful."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in models:
            for module in model.modules():
                if isinstance(module, torch.nn.GroupNorm | torch.nn.LayerNorm) and module.weight is not None:
                    module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=generator))


def unet_inputs(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, 8, 8, generator=generator)
    timesteps = torch.tensor([10, 500] * batch)[:batch]
    context = torch.randn(batch, 6, CONTEXT_DIM, generator=generator)
    return sample, timesteps, context


def token_ids(batch: int = 2) -> torch.Tensor:
    return torch.tensor([[0, 5, 9, 12, 1, 1], [0, 7, 3, 1, 1, 1]] * batch)[:batch]


def tiny_tokenizer(folder: Path, max_length: int = 12) -> CLIPTokenizer:
    """A character-level CLIP tokenizer (no merges) whose ids fit the tiny text encoder's vocabulary."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def tiny_pipeline(folder: Path, seed: int = 0, max_length: int = 12) -> StableDiffusionPipeline:
    """A complete StableDiffusionPipeline small enough to sample 16x16 images in milliseconds.

    Its tokenizer is character-level: prompts longer than `max_length - 2` characters are truncated.
    """
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=16,
    ).eval()
    return StableDiffusionPipeline(
        vae=vae, text_encoder=tiny_text_encoder(seed, max_length),
        tokenizer=tiny_tokenizer(folder / "tokenizer", max_length),
        unet=tiny_unet(seed), scheduler=DDIMScheduler(steps_offset=1, clip_sample=False), safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
