"""The real method runtime behind worker.method, on a tiny saved pipeline (no test double)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load as load_tensors

from svdiff.checkpoint import deserialize
from svdiff.prior import DirectoryCache
from tests.svdiff.tiny import tiny_pipeline
from worker import method
from worker.svdiff_runtime import MethodRuntime

torch.set_num_threads(1)


def _photo(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> MethodRuntime:
    folder = tmp_path_factory.mktemp("base")
    tiny_pipeline(folder / "parts", max_length=24).save_pretrained(folder / "pipe")
    return MethodRuntime(
        str(folder / "pipe"), svd_cache=folder / "svd", class_images=2, class_image_steps=2, edit_finetune_steps=3
    )


def _params(steps: int = 3) -> method.TrainParams:
    return method.TrainParams(steps=steps, learning_rate=1e-3, checkpoint_every=2)


def test_train_generate_export(runtime: MethodRuntime, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    states: list[bytes] = []
    subject = method.SubjectInput("sks", "dog", [_photo((200, 30, 30)), _photo((30, 200, 30))])
    output = runtime.train(
        [subject],
        _params(),
        progress=lambda s, t: seen.append((s, t)) is None,
        resume_state=None,
        save_state=states.append,
        prior_cache=DirectoryCache(tmp_path),
    )
    assert seen[-1] == (3, 3) and states
    checkpoint = deserialize(output.checkpoint)
    assert checkpoint.metadata.subjects == [{"token": "sks", "class_word": "dog"}]
    assert output.metadata["base_fingerprints"] == runtime.shifts.stats.fingerprints
    request = method.GenerationInput("a sks dog", None, 2, seed=5, steps=2, guidance_scale=2.0, width=None, height=None)
    images = runtime.generate(request, [("ckpt-1", output.checkpoint, 1.0)], progress=lambda s, t: True)
    assert [i.seed for i in images] == [5, 6]
    assert Image.open(io.BytesIO(images[0].png)).size == (images[0].width, images[0].height)
    base = runtime.generate(request, [], progress=lambda s, t: True)
    assert base[0].png != images[0].png
    assert not runtime.shifts.merged
    lora = load_tensors(runtime.export_lora(output.checkpoint, rank=2))
    assert lora and all(k.endswith(("lora_A.weight", "lora_B.weight")) for k in lora)


def test_cancel_raises_canceled(runtime: MethodRuntime, tmp_path: Path) -> None:
    subject = method.SubjectInput("sks", "dog", [_photo((10, 10, 200))])
    with pytest.raises(method.Canceled):
        runtime.train(
            [subject],
            _params(5),
            progress=lambda s, t: s < 2,
            resume_state=None,
            save_state=lambda b: None,
            prior_cache=DirectoryCache(tmp_path),
        )
    request = method.GenerationInput("a dog", None, 1, seed=0, steps=3, guidance_scale=None, width=None, height=None)
    with pytest.raises(method.Canceled):
        runtime.generate(request, [], progress=lambda s, t: False)
    assert not runtime.shifts.merged


def test_edit_returns_an_image(runtime: MethodRuntime) -> None:
    request = method.EditInput(_photo((120, 120, 20)), "a photo", "a dog", steps=2, strength=0.3, seed=1)
    image = runtime.edit(request, progress=lambda s, t: True)
    assert image.width == image.height and image.png.startswith(b"\x89PNG")


def test_foreign_checkpoint_is_refused(runtime: MethodRuntime, tmp_path: Path) -> None:
    other = tiny_pipeline(tmp_path / "other", seed=3)
    other.save_pretrained(tmp_path / "other-pipe")
    foreign = MethodRuntime(
        str(tmp_path / "other-pipe"), svd_cache=tmp_path / "svd", class_images=1, class_image_steps=1
    )
    subject = method.SubjectInput("sks", "dog", [_photo((1, 2, 3))])
    output = foreign.train(
        [subject],
        method.TrainParams(steps=1, learning_rate=1e-3, prior_preservation=False),
        progress=lambda s, t: True,
        resume_state=None,
        save_state=lambda b: None,
        prior_cache=DirectoryCache(tmp_path),
    )
    with pytest.raises(ValueError, match="another base model"):
        runtime.export_lora(output.checkpoint, rank=2)


def test_threads_load_their_runtimes_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded worker's threads each build a runtime on their first task, often at the same moment."""
    import threading

    import core.settings
    from core.settings import Settings
    from worker.svdiff_runtime import current_runtime

    tiny_pipeline(tmp_path / "parts", max_length=24).save_pretrained(tmp_path / "pipe")
    settings = Settings(base_model=str(tmp_path / "pipe"), data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    monkeypatch.setattr(core.settings, "get_settings", lambda: settings)
    results: list[str] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            results.append(current_runtime().info()["fingerprint"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(results) == 3 and len(set(results)) == 1


def test_resume_from_a_saved_state_and_ignore_an_unreadable_one(runtime: MethodRuntime, tmp_path: Path) -> None:
    subject = method.SubjectInput("sks", "dog", [_photo((200, 120, 30))])
    states: list[bytes] = []

    def run(resume: bytes | None, steps: int = 5) -> method.TrainOutput:
        return runtime.train([subject], _params(steps), progress=lambda s, t: True, resume_state=resume,
                             save_state=states.append, prior_cache=DirectoryCache(tmp_path))

    assert run(None, steps=3).metadata["resumed_from"] == 0
    assert states
    resumed = run(states[0])  # the state of step 2 (checkpoint_every=2)
    assert resumed.metadata["resumed_from"] == 2
    assert deserialize(resumed.checkpoint).metadata.training["step"] == 5
    assert run(b"not a state").metadata["resumed_from"] == 0


def test_token_rows_reach_the_checkpoint_and_its_images(runtime: MethodRuntime, tmp_path: Path) -> None:
    """With the recipe's token rows on (the bundled base's), the checkpoint carries the identifier's rows, and the
    generation path (merge, and per-sample batching across subjects) applies them."""
    runtime.token_rows, runtime.token_rows_learning_rate = True, 1e-1
    try:
        subject = method.SubjectInput("sks", "dog", [_photo((200, 30, 30)), _photo((30, 200, 30))])
        output = runtime.train([subject], _params(), progress=lambda s, t: True, resume_state=None,
                               save_state=lambda state: None, prior_cache=DirectoryCache(tmp_path))
    finally:
        runtime.token_rows = False
    checkpoint = deserialize(output.checkpoint)
    rows = [key for key, group in checkpoint.groups.items() if group == "rows"]
    assert rows and all(checkpoint.shifts[key].abs().max() > 0 for key in rows)
    assert runtime.shifts.token_rows() == {}  # the resident model is handed back without them
    request = method.GenerationInput("a sks dog", None, 1, seed=3, steps=2, guidance_scale=2.0, width=None, height=None)
    with_rows = runtime.generate(request, [("rows-1", output.checkpoint, 1.0)], progress=lambda s, t: True)
    without = {key: value for key, value in checkpoint.shifts.items() if key not in rows}
    runtime.shifts.merge(without)
    try:
        pipe_image = runtime.pipe("a sks dog", num_inference_steps=2, guidance_scale=2.0,
                                  generator=torch.Generator().manual_seed(3)).images[0]
    finally:
        runtime.shifts.restore()
    assert with_rows[0].png != _png(pipe_image)  # the rows change the image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_mix_phrasings_reach_a_two_subject_training(tmp_path: Path) -> None:
    """The recipe's collage phrasings (the bundled base's) train Cut-Mix-Unmix and are saved with the checkpoint."""
    from basemodel.recipe import MIX_PHRASINGS

    # The tiny tokenizer is character-level: a collage prompt needs a longer context than the module's runtime has.
    tiny_pipeline(tmp_path / "parts", max_length=80).save_pretrained(tmp_path / "pipe")
    runtime = MethodRuntime(str(tmp_path / "pipe"), svd_cache=tmp_path / "svd", class_images=2, class_image_steps=2,
                            mix_phrasings=MIX_PHRASINGS)  # fmt: skip
    subjects = [method.SubjectInput("sks", "dog", [_photo((200, 30, 30)), _photo((30, 200, 30))]),
                method.SubjectInput("zwx", "cat", [_photo((30, 30, 200)), _photo((200, 200, 30))])]
    params = method.TrainParams(steps=4, learning_rate=1e-3, checkpoint_every=2, cut_mix_unmix=True)
    output = runtime.train(subjects, params, progress=lambda s, t: True, resume_state=None,
                           save_state=lambda state: None, prior_cache=DirectoryCache(tmp_path / "priors"))
    training = deserialize(output.checkpoint).metadata.training
    assert training["cut_mix_unmix"] is True
    assert training["mix_phrasings"] == [list(phrasing) for phrasing in MIX_PHRASINGS]
