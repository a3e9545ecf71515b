"""`python -m bench.api` at a tiny scale (its whole run: the production stack, the fill, wrk, the table and the last
line), and the fill's backlog checked against the service's own fair order and position counters."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select

from bench.api import fill, stack
from bench.api.__main__ import last_line, table
from bench.api.wrk import parse, wrk_binary
from core import positions
from core.db import make_engine, make_sessionmaker
from core.fairness import FAIR_ORDER
from models import QUEUED, Job

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^api: reads_rps=(\d+) reads_p99_ms=([\d.]+) create_rps=(\d+) create_p99_ms=([\d.]+) "
                  r"job_get_p99_ms=([\d.]+) list100_p99_ms=([\d.]+) backlog=(\d+)$")  # fmt: skip
WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:1
  2 threads and 4 connections
WRK-RESULT requests=500 duration_us=2000000 p50_us=1500 p90_us=3000 p99_us=9100 max_us=12000 status_errors=2 \
socket_errors=1
"""


def test_wrk_result_line_is_parsed() -> None:
    result = parse("reads", 4, WRK_OUTPUT)
    assert (result.requests, result.rps, result.p50_ms, result.p99_ms) == (500, 250.0, 1.5, 9.1)
    assert result.errors == 3
    assert "| reads | 4 | 250 | 1.5 | 9.1 | 3 | - | 0 |" in table([result])
    assert LINE.match(last_line(result, result, result, result, 50))


def test_the_backlog_is_in_the_services_fair_order() -> None:
    """Every queued job's position from the counters is its place in the fair order, and the reconciler's recount
    finds nothing to correct."""
    with stack.database() as url:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            fill.add_users(conn, "tok", 0, 0)
            fill.add_history(conn, "tok", 0, 5)
            fill.queue_jobs(conn, "tok", [(0, 3)])
            _, users = fill.queue_backlog(conn, "tok", 1000, 200)
            fill.queue_backlog(conn, "tok", 1000 + users, 97)  # a second fill continues the rounds
            assert fill.queued_count(conn) == 300
            deepest = fill.deepest_queued(conn, 1)
        engine = make_engine(url)
        try:
            with make_sessionmaker(engine)() as session:
                order = session.scalars(select(Job).where(Job.status == QUEUED).order_by(*FAIR_ORDER)).all()
                found = positions.Positions(session)
                assert [found.of(job) for job in order] == list(range(300))
                [(job_id, k)] = deepest
                assert (job_id, fill.user_id("tok", k)) == (order[-1].id, order[-1].user_id)
                assert positions.repair(session) == 0
        finally:
            engine.dispose()


def test_bench_api_runs_end_to_end(tmp_path: Path) -> None:
    if wrk_binary() is None:
        pytest.skip("wrk is not installed (Debian: apt-get install -y wrk)")
    out = subprocess.run(
        [sys.executable, "-m", "bench.api", "--backlog", "50", "--history", "120", "--seconds", "2", "--warmup", "1",
         "--log-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    match = LINE.match(lines[-1])
    assert match, out.stdout + out.stderr
    assert int(match.group(7)) == 50
    assert float(match.group(1)) > 0 and float(match.group(3)) > 0
    rows = [line for line in lines if line.startswith("| ") and "scenario" not in line and "---" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| job GET, backlog 10", "| list of 100, backlog 10",
                                                     "| reads: GET /v1/subjects", "| job GET, backlog 50",
                                                     "| list of 100, backlog 50", "| creates: POST /v1/generations"]
    assert all(row.split(" | ")[5] == "0" for row in rows), rows  # no errors at this scale
    assert "load before:" in out.stdout and "load after:" in out.stdout
    assert (tmp_path / "api.log").exists()
