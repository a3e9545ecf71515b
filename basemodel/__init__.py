"""The project's own tiny text-to-image base model, its procedural world and its attribute reader."""

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
BASE_MODEL_PATH = PRETRAINED_DIR / "tiny-sd"
READER_PATH = PRETRAINED_DIR / "reader"

# Sampling settings the card recommends (see basemodel/README.md).
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 5.0
