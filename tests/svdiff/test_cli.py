"""The command line: train from a folder of photos, sample from the checkpoint, edit a photo."""

from __future__ import annotations

from pathlib import Path

import pytest

from svdiff.checkpoint import load_checkpoint
from svdiff.cli import _checkpoint_arg, main
from tests.svdiff.photos import photo
from tests.svdiff.tiny import tiny_pipeline


@pytest.fixture
def base(tmp_path: Path) -> str:
    folder = tmp_path / "base"
    tiny_pipeline(tmp_path / "build", max_length=64).save_pretrained(folder)
    return str(folder)


def test_train_sample_and_edit_from_the_command_line(base, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        photo(i, (200, 30, 30)).save(photos / f"{i}.png")
    (photos / "notes.txt").write_text("not a photo")
    caches = ["--svd-cache", str(tmp_path / "svd")]
    checkpoint, state = tmp_path / "xq.safetensors", tmp_path / "run.state"
    code = main(["train", "--base", base, "--subject", f"xq:dog:{photos}", "--out", str(checkpoint), "--steps", "3",
                 "--class-images", "2", "--class-image-steps", "2", "--prior-cache", str(tmp_path / "prior"),
                 "--state", str(state), "--checkpoint-every", "1", *caches])
    assert code == 0 and checkpoint.exists() and not state.exists()  # the state goes once the run is done
    loaded = load_checkpoint(checkpoint)
    assert loaded.metadata.subjects == [{"token": "xq", "class_word": "dog"}] and loaded.metadata.base_model == base
    assert len(list((tmp_path / "prior").rglob("*.png"))) == 2

    out = tmp_path / "images"
    code = main(["sample", "--base", base, "--prompt", "a photo of a xq dog", "--checkpoint", f"{checkpoint}:0.8",
                 "-n", "2", "--steps", "3", "--seed", "4", "--out", str(out), *caches])
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["4.png", "5.png"]

    edited = tmp_path / "edited" / "ball.png"
    code = main(["edit", str(photos / "0.png"), "--base", base, "--source", "a red ball", "--target", "a blue ball",
                 "--steps", "3", "--finetune-steps", "2", "--strength", "0.3", "--out", str(edited), *caches])
    assert code == 0 and edited.exists()
    assert str(edited) in capsys.readouterr().out


def test_checkpoint_arguments_take_an_optional_scale():
    assert _checkpoint_arg("a/b.safetensors:0.5") == (Path("a/b.safetensors"), 0.5)
    assert _checkpoint_arg("a/b.safetensors") == (Path("a/b.safetensors"), 1.0)
    assert _checkpoint_arg("c:/x.safetensors") == (Path("c:/x.safetensors"), 1.0)


def test_bad_subject_specs_and_missing_photos_are_reported(base, tmp_path):
    with pytest.raises(SystemExit, match="TOKEN:CLASS:FOLDER"):
        main(["train", "--base", base, "--subject", "xq-dog", "--out", str(tmp_path / "x")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        main(["train", "--base", base, "--subject", f"xq:dog:{tmp_path / 'empty'}", "--out", str(tmp_path / "x")])


def test_python_dash_m_runs_the_same_entry(monkeypatch, capsys):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["svdiff", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("svdiff", run_name="__main__")
    assert exit_info.value.code == 0 and "{train,sample,edit}" in capsys.readouterr().out


def test_load_pipeline_switches_to_ddim_from_the_models_own_config(tmp_path):
    from diffusers import DDIMScheduler, PNDMScheduler

    from svdiff.pipeline import load_pipeline

    built = tiny_pipeline(tmp_path / "build")
    built.scheduler = PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    built.save_pretrained(tmp_path / "pndm")
    pipe = load_pipeline(tmp_path / "pndm")
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.safety_checker is None
    assert pipe.scheduler.config.beta_schedule == "scaled_linear" and pipe.scheduler.config.beta_end == 0.012


def test_token_rows_from_the_command_line(base, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        photo(i, (30, 200, 30)).save(photos / f"{i}.png")
    checkpoint = tmp_path / "xq.safetensors"
    code = main(["train", "--base", base, "--subject", f"xq:dog:{photos}", "--out", str(checkpoint), "--steps", "2",
                 "--no-prior", "--token-rows", "--lr-rows", "0.05", "--svd-cache", str(tmp_path / "svd")])
    assert code == 0
    loaded = load_checkpoint(checkpoint)
    assert "rows" in loaded.groups.values() and loaded.metadata.training["token_rows"] is True
