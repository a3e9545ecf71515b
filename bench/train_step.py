"""`make bench-train`: median training-step time of LoRA, full fine-tuning, naive shifts and ours, side by side,
and the physical floor: the frozen base's forward and backward to its inputs with nothing trainable (any method
that trains inside the network pays at least that).

All train the same SD-shaped UNet (random weights) on the same inputs in one process; the methods take turns step
by step, so a busy machine slows all of them alike. Prints a table and, last, the ratios line.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import LoraConfig
from torch import nn

from bench.architectures import cpu_bench_unet, sd15_unet
from bench.naive import attach_naive
from svdiff import attach

FLOOR = "floor (frozen, grad to inputs)"


@dataclass
class Method:
    name: str
    unet: nn.Module
    optimizer: torch.optim.Optimizer | None  # None: the floor, which updates nothing
    trainable: int
    times: list[float]


def _build(name: str, factory: Callable[[], nn.Module], device: str, cache: str) -> Method:
    torch.manual_seed(0)
    unet = factory().to(device)
    if name == "lora r4 (attn)":
        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        params = [p for p in unet.parameters() if p.requires_grad]
    elif name == "full fine-tuning":
        params = list(unet.parameters())
    elif name == "naive shifts":
        unet.requires_grad_(False)
        params = attach_naive(unet)
    elif name == FLOOR:
        unet.requires_grad_(False)
        unet.train()
        return Method(name, unet, None, 0, [])
    else:
        unet.requires_grad_(False)
        params = list(attach({"unet": unet}, cache=cache).parameters())
    unet.train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    return Method(name, unet, optimizer, sum(p.numel() for p in params), [])


def _step(method: Method, inputs: tuple[torch.Tensor, ...], autocast: bool) -> None:
    sample, timesteps, context, target = inputs
    if method.optimizer is None:  # the floor: the backward pass runs through every layer to the inputs
        sample = sample.detach().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        prediction = method.unet(sample, timesteps, context).sample
    loss = F.mse_loss(prediction.float(), target)
    loss.backward()
    if method.optimizer is not None:
        method.optimizer.step()
        method.optimizer.zero_grad(set_to_none=True)


def _timed(method: Method, inputs: tuple[torch.Tensor, ...], device: str, autocast: bool) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    _step(method, inputs, autocast)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=["cpu", "sd15"], default="cpu")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.model == "sd15" and torch.cuda.is_available() else "cpu"
    factory, latent = (cpu_bench_unet, 32) if args.model == "cpu" else (sd15_unet, 64)
    autocast = device == "cuda"
    generator = torch.Generator().manual_seed(0)
    inputs = tuple(t.to(device) for t in (
        torch.randn(args.batch, 4, latent, latent, generator=generator),
        torch.randint(0, 1000, (args.batch,), generator=generator),
        torch.randn(args.batch, 77, 768, generator=generator),
        torch.randn(args.batch, 4, latent, latent, generator=generator),
    ))
    names = [FLOOR, "lora r4 (attn)", "full fine-tuning", "naive shifts", "ours (svdiff)"]
    with tempfile.TemporaryDirectory() as cache:
        methods = [_build(name, factory, device, cache) for name in names]
        for _ in range(args.warmup):
            for method in methods:
                _step(method, inputs, autocast)
        for _ in range(args.steps):
            for method in methods:  # interleaved: drift in machine load hits every method alike
                method.times.append(_timed(method, inputs, device, autocast))
    median = {m.name: statistics.median(m.times) for m in methods}
    lora = median["lora r4 (attn)"]
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model={args.model} latents={latent}x{latent} batch={args.batch} steps={args.steps} on {where}")
    floor = median[FLOOR]
    print("| method | trainable values | median step (s) | vs LoRA | vs floor |\n| --- | ---: | ---: | ---: | ---: |")
    for m in methods:
        print(f"| {m.name} | {m.trainable:,} | {median[m.name]:.4f} | {median[m.name] / lora:.2f}x "
              f"| {median[m.name] / floor:.2f}x |")
    ours = median["ours (svdiff)"]
    print(f"train-step: ours/floor={ours / floor:.2f} ours/lora={ours / lora:.2f} "
          f"naive/ours={median['naive shifts'] / ours:.2f} full/ours={median['full fine-tuning'] / ours:.2f}")


if __name__ == "__main__":
    main()
