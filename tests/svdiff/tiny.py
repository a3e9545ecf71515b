"""Tiny dummy components, built from configs, for fast CPU tests (the diffusers habit)."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

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


def tiny_text_encoder(seed: int = 0) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=64, hidden_size=CONTEXT_DIM, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=12, bos_token_id=0, eos_token_id=1, pad_token_id=1,
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
