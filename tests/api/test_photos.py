from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from core import keys
from tests.conftest import auth
from tests.images import dog, image, jpeg_with_exif, png_bomb


@pytest.fixture
def subject(client: httpx.Client, user: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/subjects", json={"name": "Rex", "class_word": "dog"}, headers=auth(user))
    return dict(response.json())


def upload(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], *files: tuple[str, bytes]
) -> httpx.Response:
    parts = [("files", (name, data, "image/jpeg")) for name, data in files]
    return client.post(f"/v1/subjects/{subject['id']}/photos", files=parts, headers=auth(user))


def stored_keys(runtime: Any, user: dict[str, str], subject: dict[str, Any]) -> list[str]:
    listing = runtime.storage.client.list_objects_v2(
        Bucket=runtime.storage.bucket, Prefix=keys.subject_prefix(user["id"], subject["id"])
    )
    return [item["Key"] for item in listing.get("Contents", [])]


def test_upload_list_download_delete(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any
) -> None:
    response = upload(client, user, subject, ("a.jpg", dog(0)), ("b.jpg", dog(1)), ("c.png", image("PNG")))
    assert response.status_code == 201, response.text
    photos = response.json()["data"]
    assert [(p["width"], p["height"]) for p in photos][2] == (320, 288)
    downloaded = httpx.get(photos[0]["url"])  # a presigned URL of the S3 server
    assert downloaded.status_code == 200 and Image.open(io.BytesIO(downloaded.content)).format == "JPEG"
    listed = client.get(f"/v1/subjects/{subject['id']}/photos", headers=auth(user)).json()["data"]
    assert {p["id"] for p in listed} == {p["id"] for p in photos}
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json()["photo_count"] == 3
    assert len(stored_keys(runtime, user, subject)) == 3
    gone = client.delete(f"/v1/subjects/{subject['id']}/photos/{photos[0]['id']}", headers=auth(user))
    assert gone.status_code == 204
    assert len(stored_keys(runtime, user, subject)) == 2
    missing = client.delete(f"/v1/subjects/{subject['id']}/photos/{photos[0]['id']}", headers=auth(user))
    assert missing.status_code == 404


def test_exif_orientation_applied_and_metadata_stripped(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any]
) -> None:
    response = upload(client, user, subject, ("rotated.jpg", jpeg_with_exif(orientation=6, size=(400, 300))))
    assert response.status_code == 201, response.text
    photo = response.json()["data"][0]
    assert (photo["width"], photo["height"]) == (300, 400)
    stored = Image.open(io.BytesIO(httpx.get(photo["url"]).content))
    assert stored.size == (300, 400)
    assert not stored.getexif() and "exif" not in stored.info


def test_renamed_png_is_recognised_from_its_bytes(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any
) -> None:
    response = upload(client, user, subject, ("photo.jpg", image("PNG")))
    assert response.status_code == 201
    assert stored_keys(runtime, user, subject)[0].endswith(".png")


def truncated() -> bytes:
    return dog(0)[:20_000]


def corrupt() -> bytes:
    data = bytearray(image("PNG"))
    data[60:200] = b"\x00" * 140
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "make", "status", "reason"),
    [
        ("notes.jpg", lambda: b"just some text, renamed", 415, "not a JPEG, PNG or WebP"),
        ("cut.jpg", truncated, 415, "truncated"),
        ("broken.png", corrupt, 415, "corrupt"),
        ("anim.gif", lambda: image("GIF"), 415, "not a JPEG, PNG or WebP"),
        ("bomb.png", png_bomb, 413, "pixels"),  # 900 MP: Pillow's own bomb guard
        ("big.png", lambda: png_bomb(7100), 413, "over 40 megapixels"),  # 50 MP: ours, before decoding
        ("tiny.png", lambda: image("PNG", size=(300, 200)), 422, "at least 256"),
        ("empty.jpg", lambda: b"", 415, "not a JPEG"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any,
    name: str, make: Any, status: int, reason: str,
) -> None:  # fmt: skip
    response = upload(client, user, subject, ("good.jpg", dog(0)), (name, make()))
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1 and errors[0]["field"] == "files[1]"
    assert errors[0]["detail"].startswith(name) and reason in errors[0]["detail"]
    assert stored_keys(runtime, user, subject) == []
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json()["photo_count"] == 0


def test_several_bad_files_are_all_named(client: httpx.Client, user: dict[str, str], subject: dict[str, Any]) -> None:
    response = upload(client, user, subject, ("a.txt", b"text"), ("b.jpg", dog(0)), ("c.png", png_bomb()))
    assert response.status_code == 422  # different reasons: 415 and 413
    assert [e["field"] for e in response.json()["errors"]] == ["files[0]", "files[2]"]


def test_oversized_file_is_refused_while_streaming(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "max_photo_bytes", 50_000)
    response = upload(client, user, subject, ("small.png", image("PNG")), ("big.jpg", dog(0)), ("c.png", b"?"))
    assert response.status_code == 413  # big.jpg is about 97 kB
    assert response.json()["errors"] == [{"field": "files[1]", "detail": "big.jpg: larger than 48 kB"}]
    assert "not checked" in response.json()["detail"]
    assert stored_keys(runtime, user, subject) == []


def test_too_many_photos(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "max_photos_per_subject", 3)
    too_many = upload(client, user, subject, *[(f"{i}.jpg", dog(i % 3)) for i in range(4)])
    assert too_many.status_code == 413
    assert upload(client, user, subject, ("a.jpg", dog(0)), ("b.jpg", dog(1))).status_code == 201
    over = upload(client, user, subject, ("c.jpg", dog(2)), ("d.jpg", dog(0)))
    assert over.status_code == 409
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json()["photo_count"] == 2


def test_upload_needs_multipart_with_files(client: httpx.Client, user: dict[str, str], subject: dict[str, Any]) -> None:
    url = f"/v1/subjects/{subject['id']}/photos"
    assert client.post(url, content=b"a.jpg", headers={**auth(user), "content-type": "text/plain"}).status_code == 415
    no_urls = client.post(url, json={"files": []}, headers=auth(user))  # JSON is for `urls`
    assert no_urls.status_code == 422 and no_urls.json()["errors"][0]["field"] == "urls"
    assert (
        client.post(url, data={"x": "1"}, files=[("other", ("a.jpg", dog(0)))], headers=auth(user)).status_code == 422
    )
    garbage = client.post(
        url, content=b"--zz\r\nnope", headers={**auth(user), "content-type": "multipart/form-data; boundary=zz"}
    )
    assert garbage.status_code == 422


def test_deleting_a_subject_removes_its_files(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any
) -> None:
    assert upload(client, user, subject, ("a.jpg", dog(0))).status_code == 201
    assert client.delete(f"/v1/subjects/{subject['id']}", headers=auth(user)).status_code == 204
    assert stored_keys(runtime, user, subject) == []


def test_a_multi_picture_jpeg_is_stored_as_its_first_picture(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any]
) -> None:
    first, second = Image.new("RGB", (320, 288), (200, 30, 90)), Image.new("RGB", (320, 288), (0, 0, 255))
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[second])  # what phone cameras write
    assert Image.open(io.BytesIO(out.getvalue())).format == "MPO"
    response = upload(client, user, subject, ("phone.jpg", out.getvalue()))
    assert response.status_code == 201, response.text
    stored = Image.open(io.BytesIO(httpx.get(response.json()["data"][0]["url"]).content))
    assert stored.format == "JPEG" and getattr(stored, "n_frames", 1) == 1
    red, _, blue = stored.convert("RGB").getpixel((10, 10))  # type: ignore[misc]
    assert red > 150 and blue < 150


@pytest.mark.parametrize("boundary", ["a" * 300, '""'])
def test_an_invalid_multipart_boundary_is_422(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], boundary: str
) -> None:
    response = client.post(
        f"/v1/subjects/{subject['id']}/photos", content=b"--x--",
        headers={**auth(user), "content-type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    assert response.status_code == 422, response.text


def test_parallel_uploads_cannot_exceed_the_photo_limit(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from api.services import subjects

    monkeypatch.setattr(runtime.settings, "max_photos_per_subject", 2)
    assert upload(client, user, subject, ("a.jpg", dog(0))).status_code == 201
    check = subjects.check_uploads

    def slow_check(*args: Any) -> None:  # widens the window between counting the photos and adding them
        time.sleep(0.3)
        check(*args)

    monkeypatch.setattr(subjects, "check_uploads", slow_check)
    statuses: list[int] = []
    start = threading.Barrier(3)

    def upload_one(index: int) -> None:
        start.wait()
        statuses.append(upload(client, user, subject, (f"{index}.jpg", dog(index))).status_code)

    threads = [threading.Thread(target=upload_one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409, 409]
    assert client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json()["photo_count"] == 2


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_comments_and_icc_profiles_are_stripped(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], fmt: str
) -> None:
    from PIL import ImageCms, PngImagePlugin

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "secret-comment")
    extra: dict[str, Any] = {"comment": b"secret-comment"} if fmt == "JPEG" else {"pnginfo": text}
    data = image(fmt, icc_profile=icc, **extra)
    assert Image.open(io.BytesIO(data)).info.get("icc_profile")
    response = upload(client, user, subject, (f"a.{fmt.lower()}", data))
    assert response.status_code == 201, response.text
    stored = httpx.get(response.json()["data"][0]["url"]).content
    assert b"secret-comment" not in stored
    info = Image.open(io.BytesIO(stored)).info
    assert "icc_profile" not in info and "comment" not in info and "Comment" not in info


def test_a_16_bit_greyscale_png_keeps_its_tones(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any]
) -> None:
    grey = Image.new("I;16", (320, 288), 32768)  # mid-grey on 16 bits
    grey.paste(Image.new("I;16", (160, 288), 1000), (0, 0))  # nearly black on the left
    out = io.BytesIO()
    grey.save(out, "PNG")
    response = upload(client, user, subject, ("grey16.png", out.getvalue()))
    assert response.status_code == 201, response.text
    stored = Image.open(io.BytesIO(httpx.get(response.json()["data"][0]["url"]).content)).convert("L")
    assert stored.getpixel((10, 10)) == 3 and stored.getpixel((300, 10)) == 128
