"""`make bench-faults` end to end with one fault (a worker's pool process killed mid-generation) and short jobs:
the private PostgreSQL, Redis, S3 server behind its proxy, the API and three workers start, the job is taken over,
nothing is lost or duplicated, and everything the run started is gone afterwards. About two minutes: slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults.__main__ import main

pytestmark = pytest.mark.slow


def _bench_processes() -> list[str]:
    """Processes whose command line or environment names a bench-faults folder (PostgreSQL's data folder; the
    API's and workers' SVDIFF_DATA_DIR)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"/bench-faults-" in seen:
            found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_one_fault_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    short_clocks = ["--heartbeat-timeout", "10", "--requeue-after", "10", "--reconcile-every", "5"]
    code = main(["--faults", "kill-inference-task", "--training-steps", "40", "--max-jobs", "12", *short_clocks])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("faults: jobs=") and " injected=1 lost=0 duplicated=0 failed=0 " in lines[-1]
    assert "| kill-inference-task |" in "\n".join(lines)
    assert code == 0, "\n".join(lines)
    assert _bench_processes() == []  # PostgreSQL, redis-server, moto, uvicorn and the workers are gone
