"""SVDiff: fine-tune only the singular values of a diffusion model's weights ("spectral shifts")."""

from svdiff.config import ShiftConfig, ShiftConfigError
from svdiff.factorize import Factors, SVDCache, factorize, fingerprint
from svdiff.layers import NormScaleShift, SpectralShiftConv2d, SpectralShiftEmbedding, SpectralShiftLinear
from svdiff.model import ShiftMismatchError, Shifts, SpectralShiftModel, attach, pipeline_components
from svdiff.targets import LayerSpec, UnsupportedModuleError, plan_layers

__all__ = [
    "Factors",
    "LayerSpec",
    "NormScaleShift",
    "SVDCache",
    "ShiftConfig",
    "ShiftConfigError",
    "ShiftMismatchError",
    "Shifts",
    "SpectralShiftConv2d",
    "SpectralShiftEmbedding",
    "SpectralShiftLinear",
    "SpectralShiftModel",
    "UnsupportedModuleError",
    "attach",
    "factorize",
    "fingerprint",
    "pipeline_components",
    "plan_layers",
]
