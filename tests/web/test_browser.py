"""The web app in a real headless Chromium against the embedded service: a subject's whole life (photos checked
before and after upload, training with live progress, downloads, generation alone and combined, the admin pages,
deletion), signing in with the keyboard only, and a phone-sized screen."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.web.conftest import EXAMPLES, Service, Watched, needs_browser

pytestmark = needs_browser
FINAL = ("succeeded", "failed", "canceled")


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def shoot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def sign_in(page: Any, service: Service, key: str | None = None) -> None:
    page.goto(f"{service.url}/")
    page.get_by_label("API key").fill(key or service.admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Subjects", level=1)).to_be_visible()


def photos(name: str, count: int = 3) -> list[Path]:
    return sorted((EXAMPLES / name).glob("*.png"))[:count]


def png_with_bad_text_crc(source: Path) -> bytes:
    """A PNG whose tEXt chunk has a wrong checksum: Chromium shows it, Pillow (so the API) refuses it."""
    data = source.read_bytes()
    end_of_header = 8 + 8 + 13 + 4
    text = b"Comment\x00made by a test"
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", (zlib.crc32(b"tEXt" + text) + 1) % 2**32)
    return data[:end_of_header] + chunk + data[end_of_header:]


def small_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def file_payload(name: str, data: bytes, mime: str) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


def drop_files(page: Any, selector: str, files: list[Path]) -> None:
    """Drag files onto the drop zone: a DataTransfer holding them, with the events a drag from the desktop sends."""
    payload = [{"name": f.name, "b64": base64.b64encode(f.read_bytes()).decode()} for f in files]
    transfer = page.evaluate_handle("""(files) => {
        const transfer = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
            transfer.items.add(new File([bytes], f.name, {type: "image/png"}));
        }
        return transfer;
    }""", payload)  # fmt: skip
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


def wait_job(api: httpx.Client, path: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(path).json()
        if job["status"] in FINAL:
            return dict(job)
        time.sleep(0.3)
    raise AssertionError(f"{path} did not end in {timeout:.0f} s")


def file_item(page: Any, name: str) -> Any:
    return page.locator(f'li.file[data-name="{name}"]')


def create_subject_in_the_app(page: Any, screenshots: Path, api: httpx.Client, tmp_path: Path) -> str:
    page.get_by_role("link", name="New subject").first.click()
    expect(page.get_by_role("heading", name="New subject", level=1)).to_be_visible()
    page.get_by_label("Name").fill("Diamond")
    page.get_by_label("Class word").fill("diamond")
    good = photos("green-dotted-diamond")
    page.get_by_label("Token (optional)").focus()
    page.keyboard.press("Tab")  # the file chooser is reachable from the keyboard, and shows its focus
    assert page.evaluate("document.activeElement.id") == "photo-input"
    assert page.locator("label.file-button").evaluate("l => getComputedStyle(l).outlineStyle") == "solid"
    drop_files(page, "#drop-zone", good[:2])  # dragged
    tiny, text = tmp_path / "tiny.png", tmp_path / "notes.png"
    tiny.write_bytes(small_png(32))
    text.write_bytes(b"these are notes, not a photo")
    page.set_input_files("#photo-input", [good[2], tiny, text])  # chosen with the file picker
    expect(page.locator("li.file")).to_have_count(5)
    expect(page.locator('li.file[data-check="pending"]')).to_have_count(0)
    expect(file_item(page, "tiny.png").locator(".file-problems")).to_contain_text(
        "the shorter side is 32 px, at least 64 px needed"
    )
    expect(file_item(page, "notes.png").locator(".file-problems")).to_contain_text("not a JPEG, PNG or WebP image")
    for photo in good:
        expect(file_item(page, photo.name)).to_have_attribute("data-check", "ok")
        assert file_item(page, photo.name).locator(".preview img").evaluate("img => img.naturalWidth") == 64
    expect(file_item(page, "notes.png").locator(".preview")).to_have_text("No preview")
    expect(page.locator("#photo-count")).to_contain_text("5 photos selected. 2 photos have a problem.")
    expect(page.get_by_role("button", name="Create subject")).to_be_disabled()
    shoot(page, screenshots, "03-new-subject-checked-in-the-browser")

    page.get_by_role("button", name="Remove tiny.png").click()
    page.get_by_role("button", name="Remove notes.png").click()
    expect(page.locator("#photo-count")).to_have_text("3 photos selected.")
    # A file only the API can tell is broken: its per-file error comes back next to it, and nothing is stored.
    broken = tmp_path / "broken.png"
    broken.write_bytes(png_with_bad_text_crc(good[0]))
    page.set_input_files("#photo-input", [broken])
    expect(file_item(page, "broken.png")).to_have_attribute("data-check", "ok")
    page.get_by_role("button", name="Create subject").click()
    expect(file_item(page, "broken.png").locator(".file-problems")).to_contain_text(
        "Refused by the service: not a JPEG, PNG or WebP image"
    )
    expect(page.locator("#form-error")).to_contain_text("1 of 4 files were refused; nothing was stored.")
    for photo in good:
        expect(file_item(page, photo.name)).to_have_attribute("data-check", "ok")
    assert [s["name"] for s in api.get("/v1/subjects").json()["data"]] == []
    shoot(page, screenshots, "04-new-subject-refused-by-the-api")

    page.get_by_role("button", name="Remove broken.png").click()
    page.get_by_role("button", name="Create subject").click()
    expect(page.get_by_role("heading", name="Diamond", level=1)).to_be_visible()
    (subject,) = api.get("/v1/subjects").json()["data"]
    assert (subject["name"], subject["class_word"], subject["photo_count"]) == ("Diamond", "diamond", 3)
    assert page.url.endswith(f"#/subjects/{subject['id']}")
    return str(subject["id"])


def train_in_the_app(page: Any, screenshots: Path, service: Service) -> None:
    expect(page.get_by_text("Not trained yet.")).to_be_visible()
    page.get_by_label("Steps", exact=True).fill("80")
    page.get_by_role("button", name="Start training").click()
    job = page.locator("#training .job")
    page.wait_for_function("""() => {
        const job = document.querySelector('#training .job');
        return job && job.dataset.status === 'running' && Number(job.dataset.step) > 0
            && Number(job.dataset.step) < 80 && job.textContent.includes('left');
    }""", timeout=120_000)  # fmt: skip  (the ETA comes with the second progress write: a pace needs two steps)
    detail = job.locator(".job-detail").inner_text()
    bar = job.locator("progress")
    assert bar.evaluate("p => p.max") == 80 and 0 < bar.evaluate("p => p.value") < 80
    assert "of 80" in detail and "left" in detail, detail  # the step and the ETA
    openapi = httpx.get(f"{service.url}/openapi.json", timeout=10).json()
    if "/v1/trainings/{job_id}/events" in openapi["paths"]:  # the live stream, not the polling fallback
        assert job.get_attribute("data-source") == "events"
        assert "live" in detail, detail
    expect(page.get_by_role("button", name="Cancel training")).to_be_visible()
    shoot(page, screenshots, "05-training-in-progress")
    expect(job).to_have_attribute("data-status", "succeeded", timeout=120_000)
    expect(job.locator(".job-status")).to_have_text("Training: Done")
    expect(page.get_by_role("button", name="Cancel training")).to_be_hidden()


def download_checkpoint_in_the_app(page: Any, api: httpx.Client, subject_id: str) -> None:
    (training,) = [t for t in api.get("/v1/trainings").json()["data"] if subject_id in t["subject_ids"]]
    checkpoint = api.get(f"/v1/checkpoints/{training['checkpoint_id']}").json()
    with page.expect_download() as shifts:
        page.get_by_role("link", name="Download shifts (.safetensors)").click()
    data = Path(shifts.value.path()).read_bytes()
    assert len(data) == checkpoint["size_bytes"]
    assert __import__("hashlib").sha256(data).hexdigest() == checkpoint["sha256"]
    page.get_by_label("LoRA rank").select_option("4")
    with page.expect_download(timeout=120_000) as lora:  # a 202 first: the export is made, then asked again
        page.get_by_role("button", name="Download LoRA").click()
    assert lora.value.suggested_filename == f"{checkpoint['id']}-lora-r4.safetensors"
    data = Path(lora.value.path()).read_bytes()
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    assert any("lora" in name for name in header), list(header)[:5]
    expect(page.locator("#lora-status")).to_contain_text("Downloaded the rank-4 LoRA")


def generate_in_the_app(page: Any, screenshots: Path, token: str) -> None:
    assert page.get_by_label("Prompt").input_value() == f"a photo of {token} diamond"
    page.get_by_label("Number of images").select_option("2")
    page.get_by_label("Seed (optional)").fill("7")
    page.get_by_label("Guidance (optional)").fill("5")
    page.get_by_label("Sampling steps (optional)").fill("5")
    page.get_by_role("button", name="Generate").click()
    images = page.locator("#gallery img")
    expect(images).to_have_count(2, timeout=120_000)
    page.wait_for_function("() => [...document.querySelectorAll('#gallery img')].every(i => i.complete && "
                           "i.naturalWidth === 64)")  # fmt: skip
    expect(page.locator("#gallery figcaption").first).to_contain_text("seed 7")
    links = page.locator("#gallery a[download]")
    expect(links).to_have_count(2)
    assert links.first.get_attribute("href") == images.first.get_attribute("src")
    shoot(page, screenshots, "06-generated")


def combine_in_the_app(page: Any, api: httpx.Client, service: Service, subject_id: str) -> None:
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in photos("red-striped-cross")]
    other = api.post("/v1/subjects", data={"name": "Cross", "class_word": "cross"}, files=files).json()
    training = api.post("/v1/trainings", json={"subject_ids": [other["id"]], "steps": 10}).json()
    assert wait_job(api, f"/v1/trainings/{training['id']}")["status"] == "succeeded"
    page.reload()
    expect(page.locator("#gallery img")).to_have_count(2)  # the earlier images, from the generations list
    mine = api.get(f"/v1/subjects/{subject_id}").json()
    page.get_by_label("Combine with").select_option(label=f"Cross ({other['token']} cross)")
    prompt = f"a photo of {mine['token']} diamond and {other['token']} cross"
    assert page.get_by_label("Prompt").input_value() == prompt
    page.get_by_label("Sampling steps (optional)").fill("5")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gallery img")).to_have_count(3, timeout=120_000)
    newest = api.get("/v1/generations?limit=1").json()["data"][0]
    trainings = {t["subject_ids"][0]: t["checkpoint_id"] for t in api.get("/v1/trainings").json()["data"]}
    assert newest["status"] == "succeeded" and newest["params"]["prompt"] == prompt
    assert [c["id"] for c in newest["params"]["checkpoints"]] == [trainings[subject_id], trainings[other["id"]]]


def grid_in_the_app(page: Any, screenshots: Path, subject_id: str) -> None:
    page.get_by_role("link", name="Subjects", exact=True).click()
    expect(page.get_by_role("heading", name="Subjects", level=1)).to_be_visible()
    card = page.locator(f'li.subject-card[data-subject-id="{subject_id}"]')
    expect(page.locator("li.subject-card")).to_have_count(2)
    expect(card.locator(".photo-count")).to_have_text("3 photos")
    expect(card.locator(".badge")).to_have_text("Trained")
    expect(card.locator(".cover img")).to_be_visible()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.cover img')].length === 2 && "
        "[...document.querySelectorAll('.cover img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shoot(page, screenshots, "07-subjects-grid")


def admin_in_the_app(page: Any, screenshots: Path, api: httpx.Client, service: Service, subject_id: str) -> None:
    me = api.get("/v1/me").json()
    someone = api.post("/v1/users", json={"name": "someone", "role": "user"}).json()
    theirs = service.api(someone["api_key"])
    for i in range(21):  # more than a page (20) of another user's subjects
        body = {"name": f"theirs {i:02d}", "class_word": "dog", "token": f"theirs{i:02d}"}
        assert theirs.post("/v1/subjects", json=body).status_code == 201
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Admin", level=1)).to_be_visible()
    stats = page.get_by_role("region", name="Jobs by queue and status")
    training_row = stats.locator("tbody tr", has=page.get_by_role("rowheader", name="training"))
    expect(training_row.locator("td").nth(2)).to_have_text("2")  # succeeded
    subjects = page.locator("#admin-subjects")
    row = subjects.locator(f'tr[data-subject-id="{subject_id}"]')
    expect(subjects.locator("tbody tr")).to_have_count(20)
    expect(subjects.get_by_role("button", name="Next page")).to_be_enabled()
    subjects.get_by_role("button", name="Next page").click()
    expect(subjects.get_by_text("Page 2")).to_be_visible()
    expect(row).to_be_visible()  # the oldest subjects: ours, on the second page
    cells = row.locator("td")
    expect(cells.nth(0)).to_contain_text("development admin")
    expect(cells.nth(1)).to_have_text("3")  # photos
    expect(cells.nth(2)).to_have_text("1")  # checkpoints
    assert cells.nth(3).get_attribute("title").split()[0].isdigit()
    assert int(cells.nth(3).get_attribute("title").split()[0]) > 0  # checkpoint bytes
    assert cells.nth(4).inner_text() != "-"  # last trained
    subjects.get_by_role("button", name="Previous page").click()
    expect(subjects.get_by_text("Page 1")).to_be_visible()
    subjects.get_by_label("Owner's user id").fill(me["id"])
    subjects.get_by_role("button", name="Filter").click()
    expect(subjects.locator("tbody tr")).to_have_count(2)
    expect(row).to_be_visible()
    shoot(page, screenshots, "08-admin")
    subjects.get_by_label("Owner's user id").fill(someone["id"])
    subjects.get_by_role("button", name="Filter").click()
    expect(subjects.locator("tbody tr")).to_have_count(20)
    expect(row).to_have_count(0)
    jobs = page.locator("#admin-jobs")
    jobs.get_by_label("Status").select_option("succeeded")
    jobs.get_by_label("Kind (queue)").select_option("training")
    jobs.get_by_role("button", name="Filter").click()
    expect(jobs.locator("tbody tr")).to_have_count(2)
    for cell in jobs.locator("tbody tr td:nth-child(2)").all():
        assert cell.inner_text() == "training"


def delete_in_the_app(page: Any, screenshots: Path, api: httpx.Client, service: Service, subject_id: str) -> None:
    page.goto(f"{service.url}/#/subjects/{subject_id}")
    expect(page.get_by_role("heading", name="Diamond", level=1)).to_be_visible()
    page.get_by_role("button", name="Delete subject…").click()
    dialog = page.get_by_role("dialog", name="Delete Diamond?")
    expect(dialog).to_be_visible()
    shoot(page, screenshots, "09-delete-confirmation")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    assert api.get(f"/v1/subjects/{subject_id}").status_code == 200
    page.get_by_role("button", name="Delete subject…").click()
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("heading", name="Subjects", level=1)).to_be_visible()
    expect(page.locator(f'li.subject-card[data-subject-id="{subject_id}"]')).to_have_count(0)
    assert api.get(f"/v1/subjects/{subject_id}").status_code == 404


def test_a_subjects_whole_life_in_the_browser(
    desktop: Watched, service: Service, screenshots: Path, tmp_path: Path
) -> None:
    page, api = desktop.page, service.api()
    page.goto(f"{service.url}/")
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    shoot(page, screenshots, "01-sign-in")
    sign_in(page, service)
    expect(page.get_by_text("No subjects yet.")).to_be_visible()
    shoot(page, screenshots, "02-subjects-empty")

    subject_id = create_subject_in_the_app(page, screenshots, api, tmp_path)
    train_in_the_app(page, screenshots, service)
    download_checkpoint_in_the_app(page, api, subject_id)
    token = api.get(f"/v1/subjects/{subject_id}").json()["token"]
    generate_in_the_app(page, screenshots, token)
    combine_in_the_app(page, api, service, subject_id)
    grid_in_the_app(page, screenshots, subject_id)
    admin_in_the_app(page, screenshots, api, service, subject_id)
    delete_in_the_app(page, screenshots, api, service, subject_id)

    assert service.admin_key not in page.url
    assert page.evaluate("localStorage.length") == 0
    desktop.assert_clean()


def test_signing_in_and_out_with_the_keyboard_only(desktop: Watched, service: Service, screenshots: Path) -> None:
    page = desktop.page
    page.goto(f"{service.url}/")
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()

    def focused() -> dict[str, str]:
        return dict(page.evaluate("""() => { const e = document.activeElement; const style = getComputedStyle(e);
            return {tag: e.tagName, label: e.labels?.[0]?.textContent || e.textContent.trim(),
                    outline: style.outlineStyle, width: style.outlineWidth}; }"""))  # fmt: skip

    page.keyboard.press("Tab")
    assert focused()["label"] == "Skip to content"
    page.keyboard.press("Tab")
    field = focused()
    assert (field["tag"], field["label"]) == ("INPUT", "API key")
    assert field["outline"] == "solid" and field["width"] == "3px"  # a visible focus ring
    page.keyboard.type("svd_not_a_key_of_this_service_0000000000")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("This key was not accepted.")
    assert focused()["label"] == "API key"  # back on the field, its text selected
    page.keyboard.type(service.admin_key)
    page.keyboard.press("Tab")
    button = focused()
    assert (button["tag"], button["label"], button["outline"]) == ("BUTTON", "Sign in", "solid")
    shoot(page, screenshots, "10-keyboard-sign-in-focus")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Subjects", level=1)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('svdiff.apiKey')") == service.admin_key
    assert service.admin_key not in page.url and page.evaluate("localStorage.length") == 0

    for _ in range(6):  # back from the page's heading to the header's Sign out button
        page.keyboard.press("Shift+Tab")
        if focused()["label"] == "Sign out":
            break
    assert focused() == {"tag": "BUTTON", "label": "Sign out", "outline": "solid", "width": "3px"}
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('svdiff.apiKey')") is None
    page.reload()  # the key is gone: a reload asks for it again
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    desktop.assert_clean()


def test_a_phone_sized_screen(phone: Watched, service: Service, screenshots: Path) -> None:
    page, api = phone.page, service.api()
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in photos("yellow-striped-circle")]
    subject = api.post("/v1/subjects", data={"name": "Circle on a phone", "class_word": "circle"}, files=files).json()

    def fits() -> None:
        width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"wider than the screen: {width}"

    page.goto(f"{service.url}/")
    fits()
    sign_in(page, service)
    card = page.locator(f'li.subject-card[data-subject-id="{subject["id"]}"]')
    expect(card.locator(".cover img")).to_be_visible()
    box = card.bounding_box()
    assert box is not None and box["width"] < 390 / 2  # two cards a row
    fits()
    shoot(page, screenshots, "11-phone-subjects")
    page.get_by_role("link", name="New subject").first.click()
    expect(page.get_by_role("heading", name="New subject", level=1)).to_be_visible()
    fits()
    shoot(page, screenshots, "12-phone-new-subject")
    card_link = f"{service.url}/#/subjects/{subject['id']}"
    page.goto(card_link)
    expect(page.get_by_role("heading", name="Circle on a phone", level=1)).to_be_visible()
    fits()
    page.get_by_label("Steps", exact=True).fill("5000")  # far longer than the test: it is canceled
    page.get_by_role("button", name="Start training").click()
    job = page.locator("#training .job")
    page.wait_for_function("() => Number(document.querySelector('#training .job')?.dataset.step) > 0",
                           timeout=120_000)  # fmt: skip
    fits()
    shoot(page, screenshots, "13-phone-subject-training")
    page.get_by_role("button", name="Cancel training").click()
    expect(job).to_have_attribute("data-status", "canceled", timeout=60_000)
    expect(job.locator(".job-status")).to_have_text("Training: Canceled")
    expect(page.get_by_role("button", name="Start training")).to_be_enabled()
    (training,) = [t for t in api.get("/v1/trainings").json()["data"] if subject["id"] in t["subject_ids"]]
    assert training["status"] == "canceled" and training["progress"]["step"] < 5000
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Admin", level=1)).to_be_visible()
    expect(page.locator("#admin-subjects tbody tr").first).to_be_visible()
    fits()  # wide tables scroll inside their own region
    shoot(page, screenshots, "14-phone-admin")
    assert api.delete(f"/v1/subjects/{subject['id']}").status_code == 204
    phone.assert_clean()


def test_progress_falls_back_to_polling_without_the_events_stream(desktop: Watched, service: Service) -> None:
    """A service without the events route (404, as before API v1.1): the app polls the job every 2 s instead."""
    page, api = desktop.page, service.api()
    asked: list[str] = []

    def no_stream(route: Any) -> None:
        asked.append(route.request.url)
        problem = {"type": "about:blank", "title": "Not found", "status": 404, "detail": "No such route."}
        route.fulfill(status=404, content_type="application/problem+json", body=json.dumps(problem))

    page.route("**/v1/trainings/*/events", no_stream)
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in photos("yellow-striped-circle")]
    subject = api.post("/v1/subjects", data={"name": "Polled circle", "class_word": "circle"}, files=files).json()
    sign_in(page, service)
    page.goto(f"{service.url}/#/subjects/{subject['id']}")
    page.get_by_label("Steps", exact=True).fill("30")
    page.get_by_role("button", name="Start training").click()
    job = page.locator("#training .job")
    expect(job).to_have_attribute("data-source", "polling")
    expect(job.locator(".job-detail")).to_contain_text("updated every 2 s")
    expect(job).to_have_attribute("data-status", "succeeded", timeout=120_000)
    assert asked and all(url.endswith("/events") for url in asked)  # the stream was tried first
    expect(page.get_by_role("link", name="Download shifts (.safetensors)")).to_be_visible()
    assert api.delete(f"/v1/subjects/{subject['id']}").status_code == 204
    desktop.assert_clean()
