"""`bench.serve` end to end on a tiny pipeline (16x16 images, 2 steps, 2 subjects): every method runs, the table and
the `serve:` line come out, and per-sample batches equal their subjects generated alone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench.serve import (
    CHECK_TOLERANCE,
    LABELS,
    METHODS,
    ServeConfig,
    Server,
    check_batched_equals_alone,
    main,
    measure,
    report,
    start,
)
from tests.svdiff.tiny import tiny_pipeline

LINE = re.compile(r"^serve: one=(\S+) switch=(\S+) batched=(\S+) naive=(\S+) batched_vs_one=(\S+) "
                  r"switch_vs_naive=(\S+)$")


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models only slow down with more
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def base(tmp_path: Path, one_thread: None) -> Path:
    folder = tmp_path / "base"
    tiny_pipeline(tmp_path / "build").save_pretrained(folder)
    return folder


@pytest.fixture
def server(base: Path, tmp_path: Path) -> Server:
    work = tmp_path / "work"
    work.mkdir()
    return start(ServeConfig(base, subjects=2, steps=2), work)


def test_batched_images_equal_each_subject_alone(server: Server) -> None:
    check = check_batched_equals_alone(server)
    assert check.max_difference <= CHECK_TOLERANCE
    assert check.min_subject_gap > 10 * CHECK_TOLERANCE  # the subjects' shifts really change the images
    assert check.passed
    assert not server.model.merged and all(layer.per_sample_delta is None for layer in server.model.layers.values())


def test_every_method_makes_its_images_and_the_report_adds_up(server: Server) -> None:
    times = measure(server, repeats=2, warmup=0)
    assert list(times) == list(METHODS)
    assert all(len(r.wall) == len(r.cpu) == 2 and min(r.wall) > 0 and min(r.cpu) > 0 for r in times.values())
    lines = report(times, images_per_round=2).splitlines()
    assert lines[0].startswith("| method | images | seconds | median round (s) | images/s | vs one-subject |")
    assert len(lines) == 2 + len(METHODS) + 1
    assert all(f"| {LABELS[name]} | 4 |" in row for name, row in zip(METHODS, lines[2:], strict=False))
    match = LINE.match(lines[-1])
    assert match, lines[-1]
    one, switch, batched, naive, batched_vs_one, switch_vs_naive = map(float, match.groups())
    assert batched_vs_one == pytest.approx(batched / one, abs=0.01)
    assert switch_vs_naive == pytest.approx(switch / naive, abs=0.01)


def test_main_prints_the_check_then_the_table_and_the_line(base: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    main(["--base", str(base), "--subjects", "2", "--steps", "1", "--repeats", "1", "--warmup", "0",
          "--no-naive-svd"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("base=base 16x16 subjects=2 steps=1")
    assert out[1].startswith("check: batched vs alone")
    assert out[2].startswith("request (median of 3): load ") and "switch/naive <= " in out[2]
    assert not any("(e)" in line for line in out)
    assert LINE.match(out[-1]), out[-1]
