"""`make demo`: the example subjects, the prompts, and the whole run against a real embedded server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from PIL import Image
from svdiff_client import Client

from basemodel import world
from basemodel.subjects import EXAMPLE_SUBJECTS, SUBJECTS
from basemodel.vocab import BACKGROUNDS, IDENTIFIER_CUES, RESERVED_TOKENS, SINGLE_POSITIONS, WORLD_WORDS
from demo.run import DemoOptions, prepare_folders, request_generations
from demo.scenes import find_examples, pair_prompt, scene_prompts

ROOT = Path(__file__).resolve().parents[2]
QUALITY_LINE = re.compile(r"demo-quality: subject fidelity (?P<rate>[0-9.]+|nan) over (?P<n>[0-9]+) images")
# A caption naming only an object's identifier and class word, as the demo's prompts do.
NAMED_ONLY = world.CaptionStyle(size=False, colour=False, pattern=False, photo=True)


def test_examples_are_the_example_subjects_with_their_class_words() -> None:
    examples = {e.name: e for e in find_examples(ROOT / "examples")}
    assert {n: e.class_word for n, e in examples.items()} == {
        "green-dotted-diamond": "diamond", "red-striped-cross": "cross", "yellow-striped-circle": "circle",
    }  # fmt: skip
    assert set(examples) == set(EXAMPLE_SUBJECTS)
    assert all(len(e.photos) == 4 for e in examples.values())


def test_the_examples_readme_describes_each_example_subject() -> None:
    rows = [line.strip("|").split("|") for line in (ROOT / "examples" / "README.md").read_text().splitlines()
            if line.startswith("| `")]  # fmt: skip
    described = {cells[0].strip().strip("`/"): [cell.strip() for cell in cells[2:]] for cells in rows}
    assert described == {
        name: [" + ".join(SUBJECTS[name].combination), SUBJECTS[name].tone, SUBJECTS[name].marks,
               SUBJECTS[name].outline, f"`{SUBJECTS[name].class_word}`"]
        for name in EXAMPLE_SUBJECTS
    }  # fmt: skip


def test_no_example_subject_has_the_details_its_demo_identifier_aliases() -> None:
    # The demo's service gives out the reserved identifiers in order, to the folders in name order.
    for name, token in zip(sorted(EXAMPLE_SUBJECTS), RESERVED_TOKENS, strict=False):
        details = SUBJECTS[name].details
        assert details != {kind: IDENTIFIER_CUES[token][kind] for kind in details}, (name, token)


def test_a_folder_that_is_no_subject_takes_its_last_word_as_class_word(tmp_path: Path) -> None:
    (tmp_path / "my-dog").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "my-dog" / "00.png")
    (example,) = find_examples(tmp_path)
    assert (example.name, example.class_word, len(example.photos)) == ("my-dog", "dog", 1)


def test_prompts_use_only_the_world_words_and_the_token() -> None:
    prompts = [*scene_prompts("zwx", "cross", 4, offset=1), pair_prompt(("zwx", "cross"), ("sks", "diamond"), "sand")]
    assert len(set(prompts)) == 5
    for prompt in prompts:
        words = set(prompt.replace(",", "").split())
        assert words - set(WORLD_WORDS) <= {"zwx", "sks"}, prompt
        assert any(b in words for b in BACKGROUNDS)


def test_prompts_are_world_captions_naming_the_subject_by_identifier_and_class_word() -> None:
    diamond, cross = SUBJECTS["green-dotted-diamond"], SUBJECTS["red-striped-cross"]
    captions = {world.caption(world.Scene((diamond.spec(position, "large"),), background), NAMED_ONLY, ("sks",))
                for position in SINGLE_POSITIONS for background in BACKGROUNDS}  # fmt: skip
    prompts = scene_prompts("sks", diamond.class_word, 6, offset=2)
    assert len(set(prompts)) == 6 and set(prompts) <= captions
    pair = world.Scene((diamond.spec("left", "small"), cross.spec("right", "small")), "grass")
    expected = world.caption(pair, NAMED_ONLY, ("sks", "zwx"))
    assert pair_prompt(("sks", diamond.class_word), ("zwx", cross.class_word), "grass") == expected
    assert expected == "a photo of a sks diamond on the left and a zwx cross on the right, on a grass background"


class RecordingGenerations:
    """Answers each generation the demo asks for with a new id and keeps what it asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str], dict[str, Any]]] = []

    def create(self, prompt: str, checkpoints: list[str], **options: Any) -> SimpleNamespace:
        self.asked.append((prompt, checkpoints, options))
        return SimpleNamespace(id=f"gen-{len(self.asked)}")


def test_each_generation_knows_the_one_subject_it_shows_and_the_pair_none(tmp_path: Path) -> None:
    trained = [(SimpleNamespace(name=name, token=token, class_word=SUBJECTS[name].class_word),
                SimpleNamespace(checkpoint_id=token))
               for name, token in zip(EXAMPLE_SUBJECTS, ("sks", "zwx", "qlt"), strict=True)]  # fmt: skip
    client = SimpleNamespace(generations=RecordingGenerations())
    options = DemoOptions(examples=ROOT / "examples", out=tmp_path, data_dir=tmp_path, prompts_per_subject=2)
    requested = request_generations(cast(Client, client), options, cast(Any, trained))
    assert [r.subject for r in requested] == [name for name in EXAMPLE_SUBJECTS for _ in range(2)] + [None]
    for r, (prompt, checkpoints, asked) in zip(requested, client.generations.asked, strict=True):
        assert len(checkpoints) == (2 if r.subject is None else 1)
        assert r.subject is None or f" {SUBJECTS[r.subject].class_word} " in prompt
        assert asked["num_images"] == options.images_per_prompt and asked["steps"] == options.sample_steps
    assert [r.job.id for r in requested] == [f"gen-{i + 1}" for i in range(len(requested))]


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
    quality = QUALITY_LINE.fullmatch(lines[-2])
    assert quality is not None, lines[-2]
    assert int(quality["n"]) == 3 * 2 and 0.0 <= float(quality["rate"]) <= 1.0  # the pair's images are not scored
    assert "admin view: green-dotted-diamond of demo: 4 photos, 1 checkpoint(s)" in done.stdout
    index = (out / "prompts.tsv").read_text().splitlines()
    assert len(index) == len(images) + 1 and "zwx cross" in "\n".join(index)
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
