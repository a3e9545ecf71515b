"""SVDiff: fine-tune only the singular values of a diffusion model's weights ("spectral shifts")."""

from svdiff.attention import AttentionCapture, cross_attention_layers, unmix_loss
from svdiff.config import ShiftConfig, ShiftConfigError
from svdiff.cutmix import collage, draw_layout, mix_prompt
from svdiff.data import ImageError, prepare_images
from svdiff.edit import EditResult, ddim_invert, edit
from svdiff.factorize import Factors, SVDCache, factorize, fingerprint
from svdiff.layers import NormScaleShift, SpectralShiftConv2d, SpectralShiftEmbedding, SpectralShiftLinear
from svdiff.model import ShiftMismatchError, Shifts, SpectralShiftModel, attach, pipeline_components
from svdiff.pipeline import PipelineError, load_pipeline
from svdiff.prior import BlobCache, DirectoryCache, class_images
from svdiff.sample import GeneratedImage, GenerationRequest, generate, generate_batch
from svdiff.state import Canceled, Progress, TrainState, TrainStateError
from svdiff.targets import LayerSpec, UnsupportedModuleError, plan_layers
from svdiff.train import TrainResult, train
from svdiff.train_config import Subject, TrainConfig, TrainConfigError

__all__ = [
    "AttentionCapture",
    "BlobCache",
    "Canceled",
    "DirectoryCache",
    "EditResult",
    "Factors",
    "GeneratedImage",
    "GenerationRequest",
    "ImageError",
    "LayerSpec",
    "NormScaleShift",
    "PipelineError",
    "Progress",
    "SVDCache",
    "ShiftConfig",
    "ShiftConfigError",
    "ShiftMismatchError",
    "Shifts",
    "SpectralShiftConv2d",
    "SpectralShiftEmbedding",
    "SpectralShiftLinear",
    "SpectralShiftModel",
    "Subject",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "TrainState",
    "TrainStateError",
    "UnsupportedModuleError",
    "attach",
    "class_images",
    "collage",
    "cross_attention_layers",
    "ddim_invert",
    "draw_layout",
    "edit",
    "factorize",
    "fingerprint",
    "generate",
    "generate_batch",
    "load_pipeline",
    "mix_prompt",
    "pipeline_components",
    "plan_layers",
    "prepare_images",
    "train",
    "unmix_loss",
]
