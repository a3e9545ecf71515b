"""Latent batches for the UNet stage, rendered and encoded ahead in a second process.

Rendering and encoding a batch take about a quarter of a training step on one CPU core; a producer process on the
other core lets the training process only train. Batch `step` is the same tensor inline or prefetched: renders come
from `base_batch(seed, step)` and the latent sample from a generator seeded with (seed, step).
"""

from __future__ import annotations

import itertools
import queue as queues
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from diffusers import AutoencoderKL

from basemodel.data import base_batch

LatentBatch = tuple[torch.Tensor, list[str]]  # (B, 4, 16, 16) scaled latents and their captions
_QUEUE_DEPTH = 4
_POLL_S = 5.0  # how often a waiting side checks that the other one is still alive


def load_vae(path: Path) -> AutoencoderKL:
    vae = AutoencoderKL.from_pretrained(path, torch_dtype=torch.float32).eval()
    vae.requires_grad_(False)
    return vae


@torch.no_grad()
def encode_batch(vae: AutoencoderKL, seed: int, step: int, size: int) -> LatentBatch:
    images, captions = base_batch(seed * 10**9, step, size)
    generator = torch.Generator().manual_seed(seed * 10**9 + step)
    latents = vae.encode(images).latent_dist.sample(generator) * vae.config.scaling_factor
    return latents, captions


def _produce(vae_path: str, seed: int, size: int, queue: Any) -> None:
    torch.set_num_threads(1)
    vae = load_vae(Path(vae_path))
    parent = mp.parent_process()
    for step in itertools.count():
        batch = encode_batch(vae, seed, step, size)
        while True:  # a full queue and a parent that was killed must not keep this process forever
            if parent is not None and not parent.is_alive():
                return
            try:
                queue.put(batch, timeout=_POLL_S)
                break
            except queues.Full:
                continue


def _inline(vae_path: Path, seed: int, size: int) -> Iterator[LatentBatch]:
    vae = load_vae(vae_path)
    for step in itertools.count():
        yield encode_batch(vae, seed, step, size)


@contextmanager
def latent_batches(vae_path: Path, seed: int, size: int, prefetch: bool = True) -> Iterator[Iterator[LatentBatch]]:
    """An endless iterator over batches 0, 1, 2, ...; with `prefetch`, made by a producer process that stops with
    the context."""
    if not prefetch:
        yield _inline(vae_path, seed, size)
        return
    context = mp.get_context("spawn")  # not fork: the parent's OpenMP threads do not survive a fork
    queue = context.Queue(maxsize=_QUEUE_DEPTH)
    producer = context.Process(target=_produce, args=(str(vae_path), seed, size, queue), daemon=True)
    producer.start()

    def died() -> RuntimeError:
        return RuntimeError(f"the batch producer died (exit code {producer.exitcode})")

    def batches() -> Iterator[LatentBatch]:
        while True:
            try:
                batch = queue.get(timeout=_POLL_S)
            except queues.Empty:
                if not producer.is_alive():
                    raise died() from None
                continue
            except Exception as error:  # a dead producer's shared tensors can no longer be received
                if not producer.is_alive():
                    raise died() from error
                raise
            yield batch

    try:
        yield batches()
    finally:
        producer.terminate()
        producer.join()
        queue.close()
