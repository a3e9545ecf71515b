"""Browser tests of the web app: the embedded service (`python -m service.cli serve`, as `make run` starts it) in a
subprocess on a free loopback port with its own data folder, driven by a real headless Chromium (Debian's
`chromium` package, never a downloaded browser) through Playwright.

Screenshots of each page go to `tests/web/screenshots/` (ignored by git; `SVDIFF_WEB_SCREENSHOTS` moves them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.server import EmbeddedServer
from tests.conftest import ROOT

CHROMIUM = Path(os.environ.get("SVDIFF_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("SVDIFF_WEB_SCREENSHOTS", ROOT / "tests" / "web" / "screenshots"))
EXAMPLES = ROOT / "examples"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run installs it)"
    from basemodel import BASE_MODEL_PATH

    if not (BASE_MODEL_PATH / "model_index.json").exists():
        return "the bundled base model is not built"
    return None


BROWSER_MISSING = _skip_reason()
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=f"web app browser tests: {BROWSER_MISSING}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    shots = sorted(SCREENSHOTS.glob("*.png")) if SCREENSHOTS.is_dir() else []
    if shots:
        terminalreporter.write_line(f"web app screenshots: {len(shots)} in {SCREENSHOTS}")


@dataclass
class Service:
    url: str
    admin_key: str
    server: EmbeddedServer

    def api(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.admin_key}"},
                            timeout=60)  # fmt: skip


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The embedded default with the smallest prior-preservation settings, and 64 px photos allowed (the bundled
    base model and the example photos are 64x64)."""
    data = tmp_path_factory.mktemp("web-service")
    settings = {
        "SVDIFF_DATA_DIR": str(data),
        "SVDIFF_CLASS_IMAGES": "2",
        "SVDIFF_CLASS_IMAGE_STEPS": "2",
        "SVDIFF_MIN_PHOTO_SIDE": "64",
        "SVDIFF_EVENTS_HEARTBEAT_SECONDS": "2",
    }
    with EmbeddedServer(settings, data / "server.log") as server:
        assert server.admin_key is not None
        yield Service(server.url, server.admin_key, server)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    if SCREENSHOTS.is_dir():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API runs an event loop in this thread while it is open, which would break any
    later test of the session that starts its own (asyncio.run)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@dataclass
class Watched:
    """A page, and what its console and the browser said that a test must not ignore."""

    page: Any
    csp_violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.csp_violations, f"Content-Security-Policy violations: {self.csp_violations}"
        assert not self.errors, f"script errors: {self.errors}"


def watch(page: Any) -> Watched:
    watched = Watched(page)

    def on_console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            watched.csp_violations.append(text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    return watched


@pytest.fixture
def desktop(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield watch(page)
    context.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield watch(page)
    context.close()
