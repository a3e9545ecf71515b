"""The embedded service in a subprocess: `python -m service.cli serve` on a free loopback port, its own data folder,
and the development admin key it prints at start."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType

import httpx

KEY_LINE = re.compile(r"development admin API key: (\S+)")
ROOT = Path(__file__).resolve().parent.parent


class ServerFailed(RuntimeError):
    """The service did not start, or stopped while the demo needed it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without any SVDIFF_* setting of the caller's (the demo needs none), plus the
    demo's settings and one torch thread per worker thread (the embedded worker runs three)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SVDIFF_")}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


class EmbeddedServer:
    """`with EmbeddedServer(settings, log_path) as server:` then `server.url` and `server.admin_key`."""

    def __init__(self, settings: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.settings = {**settings, "SVDIFF_HOST": "127.0.0.1", "SVDIFF_PORT": str(self.port)}
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key: str | None = None
        self.tail: deque[str] = deque(maxlen=40)
        self._key_seen = threading.Event()
        self._proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 300.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"], cwd=ROOT, env=server_environment(self.settings),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,  # its own process group: stop() ends whatever it started too
        )  # fmt: skip
        threading.Thread(target=self._read_output, name="demo-server-log", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not (self._key_seen.is_set() and self._healthy()):
            self.check_alive()
            if time.monotonic() > deadline:
                raise ServerFailed(f"the service did not start in {timeout:.0f} s (log: {self.log_path})")
            time.sleep(0.2)

    def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self._proc.stdout:
                log.write(line)
                log.flush()
                self.tail.append(line.rstrip())
                match = KEY_LINE.search(line)
                if match and self.admin_key is None:
                    self.admin_key = match.group(1)
                    self._key_seen.set()

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            code = None if self._proc is None else self._proc.returncode
            tail = "\n".join(self.tail)
            raise ServerFailed(f"the service exited (code {code}); its last lines:\n{tail}")

    def stop(self, timeout: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # uvicorn's graceful shutdown
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the group still there
        proc.wait()

    def __enter__(self) -> EmbeddedServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
