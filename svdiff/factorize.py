"""The one-time SVD of a base model's weights, and its on-disk cache keyed by a fingerprint of those weights."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

CACHE_FORMAT = "1"


@dataclass(frozen=True)
class Factors:
    """Thin SVD `W = U diag(s) Vh` of a weight reshaped to (c_out, c_in*kh*kw), stored in float32.

    `rel_residual` is ||W - U diag(s) Vh|| / ||W||: the part of W that the float32 factors miss. The shifted weight
    is always built as `W + U diag(relu(s + delta) - s) Vh`, which keeps that residual exactly; only the factorized
    training forward drops it, and only where it is below float32 resolution.
    """

    U: torch.Tensor  # (c_out, k)
    s: torch.Tensor  # (k,)
    Vh: torch.Tensor  # (k, n)
    rel_residual: float


def weight_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A Linear/Embedding weight as is, a Conv weight (c_out, c_in, kh, kw) flattened to (c_out, c_in*kh*kw)."""
    return weight.reshape(weight.shape[0], -1)


def factorize(weight: torch.Tensor) -> Factors:
    # float64 keeps the factors exact to float32 rounding; the CPU float32 SVD is not (METHOD.md section 1).
    matrix = weight_matrix(weight.detach()).to(torch.float64)
    U, s, Vh = torch.linalg.svd(matrix, full_matrices=False)
    U32, s32, Vh32 = U.float().contiguous(), s.float().contiguous(), Vh.float().contiguous()
    rebuilt = (U32.double() * s32.double()) @ Vh32.double()
    norm = matrix.norm().item()
    residual = (matrix - rebuilt).norm().item() / norm if norm > 0 else 0.0
    return Factors(U32.cpu(), s32.cpu(), Vh32.cpu(), residual)


def fingerprint(module: nn.Module) -> str:
    """A hash of a module's parameter names, shapes and values, computed at float16.

    Hashing at float16 lets the same base loaded in float32 or float16 share one fingerprint (and so one SVD cache
    and its checkpoints); a model loaded in bfloat16 rounds differently and gets another fingerprint.
    """
    digest = hashlib.sha256()
    for name, param in sorted(module.state_dict().items()):
        if param.is_meta:
            raise ValueError("cannot fingerprint a model on the meta device")
        digest.update(f"{name}:{tuple(param.shape)};".encode())
        values = param.detach().to("cpu", torch.float16).contiguous()
        digest.update(values.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


class SVDCache:
    """Factors stored as one safetensors file per layer under `<root>/<fingerprint>/`.

    One file per layer lets configurations that target different subsets share what is already computed.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, model_fingerprint: str, layer: str) -> Path:
        return self.root / model_fingerprint / f"{layer}.safetensors"

    def load(self, model_fingerprint: str, layer: str) -> Factors | None:
        path = self._path(model_fingerprint, layer)
        if not path.exists():
            return None
        try:
            tensors = load_file(str(path))
            return Factors(tensors["U"], tensors["s"], tensors["Vh"], float(tensors["rel_residual"].item()))
        except Exception:  # a truncated or foreign file is recomputed, never trusted
            return None

    def store(self, model_fingerprint: str, layer: str, factors: Factors) -> None:
        path = self._path(model_fingerprint, layer)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "U": factors.U,
            "s": factors.s,
            "Vh": factors.Vh,
            "rel_residual": torch.tensor([factors.rel_residual], dtype=torch.float64),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"format": CACHE_FORMAT})
            os.replace(tmp, path)  # atomic: concurrent workers never read half a file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get_or_compute(self, model_fingerprint: str, layer: str, weight: torch.Tensor) -> Factors:
        cached = self.load(model_fingerprint, layer)
        if cached is not None and cached.U.shape[0] == weight.shape[0]:
            return cached
        factors = factorize(weight)
        self.store(model_fingerprint, layer, factors)
        return factors


def default_cache_dir() -> Path:
    base = os.environ.get("SVDIFF_SVD_CACHE_DIR")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "svdiff" / "svd"
