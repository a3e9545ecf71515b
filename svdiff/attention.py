"""Cross-attention maps of subject tokens, and the "unmix" loss of Cut-Mix-Unmix.

Layers: the UNet's cross-attention layers at 1/2 of the latent resolution and coarser (for SD 1.x at 512 px the
32x32, 16x16 and 8x8 maps), or the coarsest available when a UNet has none that coarse. Full-resolution maps are
the costliest to materialise (64x64 queries) and the least semantic; coarse maps are where a token's layout forms.

Normalization: each subject's map (averaged over its token positions) is divided by its own mean over the image,
per sample, layer and head, so a uniform map is 1 everywhere. The loss is the mean square of that map over the
*other* subject's half (an MSE against zero), averaged over heads, both subjects, collage samples and layers:
0 when each token attends only to its own half, 1 for uniform attention, 4 when all of it lands on the wrong half.
Normalizing makes the loss independent of how much of the softmax a token gets in absolute terms, so the shifts
cannot lower it by weakening the subject token everywhere, only by moving its attention to the right side.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from diffusers.models.attention_processor import Attention

from svdiff.cutmix import half_masks

NORMALIZE_EPS = 1e-6


def _downsample(name: str, num_down: int, num_up: int) -> int:
    """How much coarser than the latent a block's attention maps are, from its module name."""
    head, _, rest = name.partition(".")
    if head == "mid_block":
        return 2 ** (num_down - 1)
    index = int(rest.split(".", 1)[0])
    return 2**index if head == "down_blocks" else 2 ** (num_up - 1 - index)


def cross_attention_layers(unet: Any, min_downsample: int = 2) -> list[str]:
    """Names of the cross-attention modules at `min_downsample` or coarser (the coarsest ones if none qualify)."""
    num_down, num_up = len(unet.down_blocks), len(unet.up_blocks)
    found = {name: _downsample(name, num_down, num_up) for name, module in unet.named_modules()
             if isinstance(module, Attention) and module.is_cross_attention}
    if not found:
        raise ValueError("the UNet has no cross-attention layers")
    threshold = min(min_downsample, max(found.values()))
    return [name for name, factor in found.items() if factor >= threshold]


class CaptureProcessor:
    """Plain (non-fused) attention that also records, while its capture records, each subject's attention map."""

    def __init__(self, capture: AttentionCapture) -> None:
        self.capture = capture

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, sequence, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query = attn.head_to_batch_dim(query)  # (B*heads, Q, d)
        key = attn.head_to_batch_dim(attn.to_k(context))  # (B*heads, K, d)
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B*heads, Q, K)
        self.capture.record(probs, attn.heads)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class AttentionCapture:
    """Installs CaptureProcessor on some cross-attention layers of a UNet and collects subject maps.

    Use `with capture.installed():` around training and `with capture.recording(weights) as maps:` around each
    forward, or `clear()` before a forward that needs no maps. The weights outlive `recording` until the next
    forward: gradient-checkpointing recomputation in backward must redo the same operations (it checks), but what
    it computes is not kept.
    """

    def __init__(self, unet: Any, layers: Sequence[str] | None = None, min_downsample: int = 2) -> None:
        self.unet = unet
        self.layers = list(layers) if layers is not None else cross_attention_layers(unet, min_downsample)
        self.weights: torch.Tensor | None = None  # (B, S, K): each subject's weights over token positions
        self.maps: list[torch.Tensor] = []  # per layer call: (B, S, heads, Q)
        self.active = False

    @contextmanager
    def installed(self) -> Iterator[AttentionCapture]:
        modules: list[Any] = [self.unet.get_submodule(name) for name in self.layers]
        previous = [module.processor for module in modules]
        try:
            for module in modules:
                module.set_processor(CaptureProcessor(self))
            yield self
        finally:
            self.clear()
            for module, processor in zip(modules, previous, strict=True):
                module.set_processor(processor)

    @contextmanager
    def recording(self, weights: torch.Tensor) -> Iterator[list[torch.Tensor]]:
        self.weights, self.maps, self.active = weights, [], True
        try:
            yield self.maps
        finally:
            self.active = False

    def clear(self) -> None:
        self.weights, self.active = None, False

    def record(self, probs: torch.Tensor, heads: int) -> None:
        if self.weights is None:
            return
        batch = self.weights.shape[0]
        probs = probs.view(batch, heads, probs.shape[1], probs.shape[2])  # (B, heads, Q, K)
        weights = self.weights.to(probs.device, probs.dtype)  # (B, S, K)
        maps = torch.einsum("bhqk,bsk->bshq", probs, weights).float()  # (B, S, heads, Q)
        if self.active:
            self.maps.append(maps)


def token_positions(tokenizer: Any, prompt: str, word: str, *, last: bool = False) -> list[int]:
    """Positions of `word`'s tokens in the padded, truncated ids of `prompt` (first or last occurrence)."""
    ids = tokenizer(prompt, padding="max_length", truncation=True, max_length=tokenizer.model_max_length).input_ids
    word_ids = tokenizer(word, add_special_tokens=False).input_ids
    starts = [i for i in range(len(ids) - len(word_ids) + 1) if ids[i : i + len(word_ids)] == word_ids]
    if not word_ids or not starts:
        raise ValueError(f"token {word!r} is not in the (possibly truncated) prompt {prompt!r}")
    start = starts[-1] if last else starts[0]
    return list(range(start, start + len(word_ids)))


def subject_weights(tokenizer: Any, prompts: Sequence[str], pairs: Sequence[tuple[str, str] | None]) -> torch.Tensor:
    """(B, 2, K) weights averaging over the left and right subject tokens' positions; zeros where pairs[i] is None."""
    weights = torch.zeros(len(prompts), 2, tokenizer.model_max_length)
    for row, (prompt, pair) in enumerate(zip(prompts, pairs, strict=True)):
        if pair is None:
            continue
        for side, (word, last) in enumerate(((pair[0], False), (pair[1], True))):
            positions = token_positions(tokenizer, prompt, word, last=last)
            weights[row, side, positions] = 1.0 / len(positions)
    return weights


def _map_shape(queries: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) of an attention map with `queries` positions over a latent of height x width."""
    map_height = round(height * math.sqrt(queries / (height * width)))
    if map_height < 1 or queries % map_height:
        raise ValueError(f"cannot lay {queries} queries over a {height}x{width} latent")
    return map_height, queries // map_height


def unmix_loss(maps: Sequence[torch.Tensor], collage: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """Mean squared mean-normalized attention of each subject inside the other subject's half (see module doc).

    `maps`: per layer (B, 2, heads, Q) as recorded; `collage`: (B,) bool, the samples that are collages.
    """
    selected = collage.nonzero().flatten()
    if not maps or selected.numel() == 0:
        device = maps[0].device if maps else collage.device
        return torch.zeros((), device=device)
    losses = []
    for layer_maps in maps:
        chosen = layer_maps[selected.to(layer_maps.device)]  # (N, 2, heads, Q)
        map_h, map_w = _map_shape(chosen.shape[-1], *latent_size)
        other = half_masks(map_h, map_w).flip(0).flatten(1).to(chosen.device)  # (2, Q): right for left, left for right
        normalized = chosen / (chosen.mean(-1, keepdim=True) + NORMALIZE_EPS)  # (N, 2, heads, Q), mean 1
        inside = (normalized.square() * other[None, :, None]).sum(-1) / other.sum(-1)[None, :, None]  # (N, 2, heads)
        losses.append(inside.mean())
    return torch.stack(losses).mean()
