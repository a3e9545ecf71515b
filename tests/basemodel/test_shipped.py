"""The shipped base pipeline and attribute reader: load, sample and read on the CPU in seconds."""

import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from basemodel import BASE_MODEL_PATH, DEFAULT_GUIDANCE, DEFAULT_STEPS, PRETRAINED_DIR, READER_PATH
from basemodel.evaluate import prompt_following
from basemodel.layout_grid import GAP, ROWS, layout_grid
from basemodel.pipeline import load
from basemodel.reader import AttributeReader, load_reader
from basemodel.train_reader import EVAL_ID_START, ReaderTraining, evaluate
from basemodel.visibility import token_visibility

SHIPPED_BUDGET_BYTES = 25 * 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Small kernels on a shared CPU run faster on one thread than on two that wait for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipeline() -> StableDiffusionPipeline:
    return load()


@pytest.fixture(scope="module")
def reader() -> AttributeReader:
    return load_reader()


def test_shipped_artefacts_fit_the_size_budget() -> None:
    size = sum(path.stat().st_size for path in PRETRAINED_DIR.rglob("*") if path.is_file())
    assert size <= SHIPPED_BUDGET_BYTES


def test_pipeline_loads_like_any_sd_checkpoint_in_seconds() -> None:
    start = time.monotonic()
    pipeline = StableDiffusionPipeline.from_pretrained(BASE_MODEL_PATH)
    assert time.monotonic() - start < 10
    assert isinstance(pipeline.vae, AutoencoderKL) and isinstance(pipeline.unet, UNet2DConditionModel)
    assert isinstance(pipeline.text_encoder, CLIPTextModel) and isinstance(pipeline.tokenizer, CLIPTokenizer)
    assert isinstance(pipeline.scheduler, DDIMScheduler) and pipeline.safety_checker is None


def test_a_64px_sample_takes_seconds(pipeline: StableDiffusionPipeline) -> None:
    start = time.monotonic()
    (image,) = pipeline("a red striped star on the left, on a grass background", height=64, width=64,
                        num_inference_steps=DEFAULT_STEPS, guidance_scale=DEFAULT_GUIDANCE,
                        generator=torch.Generator().manual_seed(0)).images  # fmt: skip
    assert time.monotonic() - start < 20
    pixels = np.asarray(image)
    assert pixels.shape == (64, 64, 3) and pixels.std() > 10


def test_reader_loads_in_seconds() -> None:
    start = time.monotonic()
    load_reader(READER_PATH)
    assert time.monotonic() - start < 5


def test_reader_reads_every_attribute_of_fresh_renders(reader: AttributeReader) -> None:
    # Fresh: evaluation ids start above every id a training batch can use.
    assert ReaderTraining().max_steps * ReaderTraining().batch_size < EVAL_ID_START
    accuracy = evaluate(reader, n_images=200, first_id=EVAL_ID_START + 7_000_000)
    details = {f"single_{kind}" for kind in ("tone", "marks", "outline")}
    # Measured on 1000 fresh renders (basemodel/README.md): every attribute head 96-100%, the details 93-99%.
    assert min(v for k, v in accuracy.items() if k not in details) >= 0.95, accuracy
    assert min(v for k, v in accuracy.items() if k in details) >= 0.88, accuracy


def test_base_model_follows_its_prompts(pipeline: StableDiffusionPipeline, reader: AttributeReader) -> None:
    """The figures of `python -m basemodel.evaluate --n 128 --seed 3` at one thread: how often single objects show
    each prompted attribute (the lowest of the five), how often both halves of a pair show their shape and colour,
    and how much the reserved identifiers move the text encoder next to attribute words."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        following = prompt_following(pipeline, reader, n=128, seed=3)
    finally:
        torch.set_num_threads(threads)
    visibility = token_visibility(pipeline.text_encoder, pipeline.tokenizer)
    # The model card's figures of record (512 prompts of seed 4, the zero-terminal-SNR base of 2026-12-05):
    # single_min 0.931 (colour; position 1.000), pairs 0.842, token visibility 0.789. Held with a margin for 128
    # other prompts (about two standard errors), so that a regression fails and sampling noise does not.
    single = following.rates("single")
    assert min(single[a] for a in ("shape", "colour", "pattern", "background")) >= 0.85, single
    assert single["position"] >= 0.90, single  # 0.36 (chance) before the zero-SNR schedule
    assert following.pairs() >= 0.70, following.rates("pair")
    assert visibility.ratio >= 0.5, visibility


def test_the_layout_grid_has_a_row_per_prompt_and_a_column_per_noise() -> None:
    grid = layout_grid(BASE_MODEL_PATH, seeds=2)
    assert grid.size == (2 * 2 * (64 + GAP), 2 * len(ROWS) * (64 + GAP))
