"""Runs wrk with `requests.lua` over a file of requests and reads its result line."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("requests.lua")
RESULT = re.compile(r"^WRK-RESULT (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    key: str
    body: str = ""  # JSON, on one line; a request with a body gets a unique Idempotency-Key


@dataclass(frozen=True)
class Result:
    scenario: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    status_errors: int  # answers other than 2xx and 3xx
    socket_errors: int  # connect, read, write errors and timeouts
    per_worker: tuple[int, ...] = ()  # wrk's connections held by each uvicorn worker during the run
    db_connections_opened: int = 0  # PostgreSQL sessions the API opened during the run (its pools' churn)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def parse(scenario: str, connections: int, output: str) -> Result:
    match = RESULT.search(output)
    if match is None:
        raise RuntimeError(f"no WRK-RESULT line in wrk's output:\n{output}")
    fields = {name: int(value) for name, value in (pair.split("=") for pair in match.group(1).split())}
    return Result(
        scenario=scenario, connections=connections, requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6, p50_ms=fields["p50_us"] / 1e3, p90_ms=fields["p90_us"] / 1e3,
        p99_ms=fields["p99_us"] / 1e3, max_ms=fields["max_us"] / 1e3, status_errors=fields["status_errors"],
        socket_errors=fields["socket_errors"],
    )  # fmt: skip


def run(url: str, requests: list[Request], *, scenario: str, connections: int, seconds: float, threads: int = 2,
        tag: str = "run") -> tuple[Result, str]:  # fmt: skip
    """wrk at `connections` for `seconds`; returns the parsed result and wrk's own output."""
    binary = wrk_binary()
    if binary is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as lines:
        for r in requests:
            lines.write(f"{r.method}\t{r.path}\t{r.key}\t{r.body}\n")
    try:
        cmd = [binary, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(seconds, 1):.0f}s",
               "--timeout", "10s", "--latency", "-s", str(SCRIPT), url, "--", lines.name, tag]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        Path(lines.name).unlink(missing_ok=True)
    return parse(scenario, connections, out), out
