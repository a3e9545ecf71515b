"""The web app's HTTP side: its Content-Security-Policy and other headers, where images may come from, the
setting that turns it on, and its static files (no inline script or style, nothing outside its folder)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.web import HERE, STATIC, content_security_policy, storage_origins
from core.settings import Settings
from tests.web.conftest import Service, Watched, needs_browser

STRICT = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
}
PRODUCTION = {"environment": "production", "secret_key": "s" * 40, "database_url": "postgresql+psycopg://u:p@db/x",
              "broker_url": "redis://redis:6379/0"}  # fmt: skip


def directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        assert name not in out, f"{name} twice in {policy!r}"
        out[name] = values
    return out


@pytest.mark.parametrize(("path", "media_type"), [
    ("/", "text/html"), ("/web/app.js", "text/javascript"), ("/web/style.css", "text/css"),
    ("/web/config.json", "application/json"),
])  # fmt: skip
def test_every_answer_of_the_app_carries_a_strict_policy(service: Service, path: str, media_type: str) -> None:
    response = httpx.get(service.url + path, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media_type)
    policy = response.headers["content-security-policy"]
    assert "unsafe" not in policy and "*" not in policy
    found = directives(policy)
    for name, values in STRICT.items():
        assert found[name] == values, (name, policy)
    # The local storage's signed links are served by the service at its public base URL.
    assert found["img-src"] == ["'self'", "blob:", "data:", service.url]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def test_the_config_carries_the_limits_the_api_checks(service: Service) -> None:
    config = httpx.get(f"{service.url}/web/config.json", timeout=10).json()
    assert config["min_photo_side"] == 64  # SVDIFF_MIN_PHOTO_SIDE of this service
    assert config["max_photo_bytes"] == 20 * 1024 * 1024
    assert (config["min_photos"], config["max_photos"]) == (3, 5)
    assert config["accepted_types"] == ["image/jpeg", "image/png", "image/webp"]
    assert 16 in config["lora_ranks"]


@pytest.mark.parametrize("path", ["/web/../__init__.py", "/web/__init__.py", "/web/missing.js", "/web/index.html",
                                  "/web/%2e%2e%2fapp.js", "/web/app.js%00.css"])  # fmt: skip
def test_only_the_apps_own_files_are_served(service: Service, path: str) -> None:
    response = httpx.get(service.url + path, timeout=10)
    assert response.status_code == 404, (path, response.status_code)
    assert "from __future__" not in response.text


def test_no_inline_script_or_style_and_no_markup_from_strings() -> None:
    html = (HERE / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="module" src="/web/app.js">']
    assert "<style" not in html and " style=" not in html and "javascript:" not in html
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
    for module in STATIC.glob("*.js"):
        text = module.read_text()
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                          '"style"', "localStorage"):  # fmt: skip
            assert forbidden not in text, f"{forbidden} in {module.name}"
    assert (STATIC / "app.js").exists() and (STATIC / "style.css").exists()


@pytest.mark.parametrize(("settings", "origins"), [
    ({}, ["http://127.0.0.1:8000"]),
    ({"public_base_url": "https://svdiff.example.com/"}, ["https://svdiff.example.com"]),
    ({"storage": "s3", "s3_endpoint_url": "http://minio:9000", "s3_public_endpoint_url": "https://files.example.com"},
     ["https://files.example.com"]),
    ({"storage": "s3", "s3_endpoint_url": "http://minio:9000/"}, ["http://minio:9000"]),
    ({"storage": "s3", "s3_region": "eu-west-3"}, ["https://s3.amazonaws.com", "https://s3.eu-west-3.amazonaws.com"]),
    ({"storage": "s3", "s3_public_endpoint_url": "https://user:pw@Files.Example.com:8443/bucket"},
     ["https://files.example.com:8443"]),
])  # fmt: skip
def test_images_may_come_from_the_storages_public_origin(settings: dict[str, str], origins: list[str]) -> None:
    s = Settings(**settings)  # type: ignore[arg-type]
    assert storage_origins(s) == origins
    img = directives(content_security_policy(s))["img-src"]
    assert img == ["'self'", "blob:", "data:", *origins]


def test_on_in_development_off_in_production_unless_set() -> None:
    assert Settings().web_app_enabled
    assert not Settings(web_app=False).web_app_enabled
    assert not Settings(**PRODUCTION).web_app_enabled  # type: ignore[arg-type]
    assert Settings(**PRODUCTION, web_app=True).web_app_enabled  # type: ignore[arg-type]


def test_a_service_with_the_app_off_answers_404_for_it(tmp_path: Path) -> None:
    from api.app import create_app

    off = TestClient(create_app(settings=Settings(data_dir=tmp_path, web_app=False)))
    on = TestClient(create_app(settings=Settings(data_dir=tmp_path, web_app=True)))
    for path in ("/", "/web/app.js", "/web/config.json"):
        assert off.get(path).status_code == 404, path
        assert on.get(path).status_code == 200, path
    assert off.get("/").headers["content-type"].startswith("application/problem+json")


@needs_browser
def test_the_browser_enforces_the_policy(desktop: Watched, service: Service) -> None:
    """What the policy forbids is blocked in the browser, and the tests' watcher sees each violation (so the flow
    tests' "no violations" can fail)."""
    page = desktop.page
    page.goto(f"{service.url}/")
    page.get_by_role("heading", name="Sign in", level=1).wait_for()
    page.evaluate("""() => {
        const styled = document.createElement("p");
        styled.setAttribute("style", "color: red");
        document.body.append(styled);
        const script = document.createElement("script");
        script.textContent = "window.injected = true";
        document.body.append(script);
        const image = document.createElement("img");
        image.src = "https://images.example.com/x.png";
        document.body.append(image);
    }""")  # fmt: skip
    page.wait_for_timeout(500)
    assert page.evaluate("window.injected") is None
    blocked = " ".join(desktop.csp_violations)
    assert "style-src" in blocked and "script-src" in blocked and "img-src" in blocked, desktop.csp_violations
