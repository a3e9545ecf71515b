"""`make demo`: the example subjects, the prompts, and (slow) the whole run against a real embedded server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from basemodel.vocab import BACKGROUNDS, WORLD_WORDS
from demo.run import DemoOptions, prepare_folders
from demo.scenes import find_examples, pair_prompt, scene_prompts

ROOT = Path(__file__).resolve().parents[2]


def test_examples_and_their_class_words() -> None:
    examples = {e.name: e for e in find_examples(ROOT / "examples")}
    assert {n: e.class_word for n, e in examples.items()} == {
        "orange-ringed-square": "square", "purple-checkered-star": "star", "white-dotted-heart": "shape",
    }  # fmt: skip
    assert all(len(e.photos) == 4 for e in examples.values())


def test_prompts_use_only_the_world_words_and_the_token() -> None:
    prompts = [*scene_prompts("zwx", "star", 4, offset=1), pair_prompt(("zwx", "star"), ("sks", "square"), "sand")]
    assert len(set(prompts)) == 5
    for prompt in prompts:
        words = set(prompt.replace(",", "").split())
        assert words - set(WORLD_WORDS) <= {"zwx", "sks"}, prompt
        assert any(b in words for b in BACKGROUNDS)


def test_the_demo_wipes_only_its_own_data_folder(tmp_path: Path) -> None:
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "precious.db").write_text("x")
    with pytest.raises(FileExistsError):
        prepare_folders(DemoOptions(examples=ROOT / "examples", out=tmp_path / "out", data_dir=foreign))
    assert (foreign / "precious.db").exists()
    own = tmp_path / "own"
    options = DemoOptions(examples=ROOT / "examples", out=tmp_path / "out", data_dir=own)
    prepare_folders(options)
    (own / "svdiff.db").write_text("old run")
    (tmp_path / "out" / "old-0.png").write_bytes(b"old")
    prepare_folders(options)
    assert not (own / "svdiff.db").exists() and not list((tmp_path / "out").glob("*.png"))


@pytest.mark.slow
def test_make_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "demo", "--out", str(out), "--data-dir", str(tmp_path / "var"), "--steps", "30",
           "--class-images", "2", "--class-image-steps", "4", "--prompts", "1", "--sample-steps", "6"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    images = sorted(out.glob("*.png"))
    assert lines[-1] == f"demo: {len(images)} images in {out}"
    assert len(images) == 3 * 2 + 2  # three subjects, one scene each, two images per scene; and the pair
    assert all(Image.open(p).size == (64, 64) for p in images)
    assert "admin view: purple-checkered-star of demo: 4 photos, 1 checkpoint(s)" in done.stdout
    index = (out / "prompts.tsv").read_text().splitlines()
    assert len(index) == len(images) + 1 and "zwx star" in "\n".join(index)
    assert not processes_with_env(f"SVDIFF_DATA_DIR={tmp_path / 'var'}"), "the demo left server processes behind"


def processes_with_env(entry: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry.encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found
