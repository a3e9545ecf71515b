"""`POST /v1/subjects/{id}/photos` with JSON `{"urls": [...]}`: real HTTP servers on loopback serve the test images.

Loopback is what the address guard refuses, so the happy paths lift it (`allow_private_webhooks`, as the webhook
tests do). With the guard on, 127.0.0.2 stands in for a public host (the one exception these tests make to
`core.addresses.is_public`) and 127.0.0.1 stays private: a twin server listens on the same port of each, so a fetch
that reached the private one (a redirect, a second DNS answer) would be seen there."""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from PIL import Image

from core import addresses, keys
from tests.conftest import auth, free_port
from tests.images import dog, image, jpeg_with_exif

STREAM_BYTES = 200 * 2**20  # what /big answers, were it read to the end
STATIC = {
    "/dog0.jpg": lambda: dog(0),
    "/dog1.jpg": lambda: dog(1),
    "/photo.png": lambda: image("PNG"),
    "/exif.jpg": lambda: jpeg_with_exif(orientation=6, size=(400, 300)),
    "/notes.jpg": lambda: b"just some text, named like a photo",
}


class PhotoServer:
    """A real HTTP server: the test images, plus redirects, a 404, an endless body and a trickling one."""

    def __init__(self, host: str, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("host", "")))
                with contextlib.suppress(OSError):  # the client hung up: what the limits are for
                    server.answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.base = f"{'https' if tls else 'http'}://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path, _, query = handler.path.partition("?")
        if path in STATIC:
            self.send(handler, 200, STATIC[path]())
        elif path == "/redirect":
            self.send(handler, 302, b"", location=unquote(query.removeprefix("to=")))
        elif path == "/loop":
            self.send(handler, 302, b"", location="/loop")
        elif path in ("/big", "/big-declared"):
            self.stream(handler, declared=path == "/big-declared")
        elif path == "/slow.jpg":
            self.trickle(handler)
        elif path == "/delay.jpg":
            time.sleep(0.8)
            self.send(handler, 200, dog(0))
        else:
            self.send(handler, 404, b"no such photo")

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, location: str | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        if location is not None:
            handler.send_header("Location", location)
        handler.end_headers()
        handler.wfile.write(body)

    def stream(self, handler: BaseHTTPRequestHandler, declared: bool) -> None:
        """A JPEG header, then zeros, STREAM_BYTES in all; without a Content-Length the body ends at the close."""
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        if declared:
            handler.send_header("Content-Length", str(STREAM_BYTES))
        handler.end_headers()
        block = dog(0)[:2] + b"\x00" * (65536 - 2)
        while self.sent < STREAM_BYTES:
            handler.wfile.write(block)
            self.sent += len(block)

    def trickle(self, handler: BaseHTTPRequestHandler) -> None:
        """Headers at once, then 100 bytes every 0.1 s: each read answers quickly, the whole takes 100 s."""
        body = dog(0)
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for start in range(0, len(body), 100):
            handler.wfile.write(body[start : start + 100])
            handler.wfile.flush()
            self.sent += 100
            time.sleep(0.1)


@pytest.fixture
def twins() -> Iterator[tuple[PhotoServer, PhotoServer]]:
    """(the public stand-in on 127.0.0.2, the private server on 127.0.0.1), on the same port."""
    for _ in range(50):
        public = PhotoServer("127.0.0.2")
        try:
            private = PhotoServer("127.0.0.1", public.port)
        except OSError:  # that port is taken on 127.0.0.1
            public.close()
            continue
        yield public, private
        public.close()
        private.close()
        return
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


@pytest.fixture
def server(twins: tuple[PhotoServer, PhotoServer]) -> PhotoServer:
    return twins[1]


@pytest.fixture
def private_allowed(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.settings, "allow_private_webhooks", True)


@pytest.fixture
def guard_on(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.settings, "allow_private_webhooks", False)
    public = addresses.is_public
    monkeypatch.setattr(addresses, "is_public", lambda address: address == "127.0.0.2" or public(address))


@pytest.fixture
def subject(client: httpx.Client, user: dict[str, str]) -> dict[str, Any]:
    response = client.post("/v1/subjects", json={"name": "Rex", "class_word": "dog"}, headers=auth(user))
    return dict(response.json())


def post_urls(client: httpx.Client, user: dict[str, str], subject: dict[str, Any], *urls: str) -> httpx.Response:
    return client.post(f"/v1/subjects/{subject['id']}/photos", json={"urls": list(urls)}, headers=auth(user))


def stored(client: httpx.Client, runtime: Any, user: dict[str, str], subject: dict[str, Any]) -> tuple[int, list[str]]:
    """(the subject's photo_count, the keys stored under it)."""
    listing = runtime.storage.client.list_objects_v2(
        Bucket=runtime.storage.bucket, Prefix=keys.subject_prefix(user["id"], subject["id"])
    )
    count = client.get(f"/v1/subjects/{subject['id']}", headers=auth(user)).json()["photo_count"]
    return count, [item["Key"] for item in listing.get("Contents", [])]


@pytest.mark.usefixtures("private_allowed")
def test_photos_are_fetched_checked_and_stored(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, server: PhotoServer
) -> None:
    response = post_urls(client, user, subject, server.url("/dog0.jpg"), server.url("/photo.png"),
                         server.url("/exif.jpg"))  # fmt: skip
    assert response.status_code == 201, response.text
    photos = response.json()["data"]
    assert [(p["width"], p["height"]) for p in photos][1:] == [(320, 288), (300, 400)]  # EXIF orientation applied
    rotated = httpx.get(photos[2]["url"]).content
    assert hashlib.sha256(rotated).hexdigest() == photos[2]["sha256"]
    assert not Image.open(io.BytesIO(rotated)).getexif()  # GPS and the rest stripped
    count, blobs = stored(client, runtime, user, subject)
    assert count == 3 and sorted(key.rsplit(".", 1)[1] for key in blobs) == ["jpg", "jpg", "png"]
    assert sorted(path for path, _ in server.requests) == ["/dog0.jpg", "/exif.jpg", "/photo.png"]


@pytest.mark.usefixtures("guard_on")
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/dog0.jpg",
        "http://[::1]:{port}/dog0.jpg",
        "http://[::ffff:127.0.0.1]:{port}/dog0.jpg",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:{port}/dog0.jpg",  # a name that resolves to loopback
        "ftp://127.0.0.2:{port}/dog0.jpg",
        "http://user:pw@127.0.0.2:{port}/dog0.jpg",
    ],
)
def test_the_guard_refuses_what_is_not_a_public_http_address(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, url: str,
    twins: tuple[PhotoServer, PhotoServer],
) -> None:  # fmt: skip
    url = url.format(port=twins[0].port)
    response = post_urls(client, user, subject, url)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "urls[0]" and error["detail"].startswith(f"{url}: refused: ")
    assert twins[0].requests == twins[1].requests == []
    assert stored(client, runtime, user, subject) == (0, [])


@pytest.mark.usefixtures("guard_on")
def test_redirects_are_followed_and_each_hop_is_checked(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any,
    twins: tuple[PhotoServer, PhotoServer],
) -> None:  # fmt: skip
    public, private = twins
    to_public = public.url("/redirect?to=/dog0.jpg")
    assert post_urls(client, user, subject, to_public).status_code == 201  # the stand-in passes the guard
    to_private = public.url(f"/redirect?to={private.url('/dog1.jpg')}")
    response = post_urls(client, user, subject, to_private)
    assert response.status_code == 422, response.text
    detail = response.json()["errors"][0]["detail"]
    assert detail.startswith(f"{to_private}: redirected to {private.url('/dog1.jpg')}: refused: ")
    assert private.requests == []
    assert stored(client, runtime, user, subject)[0] == 1


@pytest.mark.usefixtures("guard_on")
def test_the_connection_goes_to_the_address_that_was_checked(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    twins: tuple[PhotoServer, PhotoServer],
) -> None:  # fmt: skip
    """DNS rebinding: photos.test answers the public address once, then loopback; the fetch must not look again."""
    public, private = twins
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "photos.test":
            return real(host, port, *args, **kwargs)
        answers.append("127.0.0.2" if not answers else "127.0.0.1")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[-1], int(port or 80)))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    response = post_urls(client, user, subject, f"http://photos.test:{public.port}/dog0.jpg")
    assert response.status_code == 201, response.text
    assert public.requests == [("/dog0.jpg", f"photos.test:{public.port}")]  # the name, at the checked address
    assert private.requests == [] and answers == ["127.0.0.2"]


def certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (and its key), which the test makes the client trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


@pytest.mark.usefixtures("guard_on")
def test_https_connects_to_the_checked_address_under_its_name(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The TLS server name (SNI) is the URL's name, and the certificate is checked against it, not the IP."""
    import certifi

    cert, key = certificate(tmp_path, "photos.test")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    names: list[str | None] = []
    tls.sni_callback = lambda _sock, name, _context: names.append(name)  # type: ignore[assignment,func-returns-value]
    server = PhotoServer("127.0.0.2", tls=tls)
    try:
        monkeypatch.setattr(certifi, "where", lambda: str(cert))  # what httpx trusts by default
        monkeypatch.setattr(addresses, "resolve", lambda host, port: ["127.0.0.2"])  # photos.test, other.test
        good = post_urls(client, user, subject, f"https://photos.test:{server.port}/dog0.jpg")
        assert good.status_code == 201, good.text
        assert server.requests == [("/dog0.jpg", f"photos.test:{server.port}")] and names == ["photos.test"]
        wrong = post_urls(client, user, subject, f"https://other.test:{server.port}/dog0.jpg")
        assert wrong.status_code == 422 and "certificate" in wrong.json()["errors"][0]["detail"]
        assert names[-1] == "other.test" and len(server.requests) == 1
    finally:
        server.close()


@pytest.mark.usefixtures("private_allowed")
@pytest.mark.parametrize(("path", "cut"), [("/big", "the download stopped there"), ("/big-declared", "not downloaded")])
def test_an_oversized_answer_is_cut_off(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, server: PhotoServer,
    monkeypatch: pytest.MonkeyPatch, path: str, cut: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(runtime.settings, "max_photo_bytes", 50_000)
    response = post_urls(client, user, subject, server.url("/photo.png"), server.url(path))  # 1 kB, and 200 MB
    assert response.status_code == 413, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "urls[1]" and error["detail"].startswith(f"{server.url(path)}: larger than 48 kB")
    assert cut in error["detail"]
    assert server.sent < 32 * 2**20  # of 200 MB: the reading stopped at the limit (what sits in socket buffers)
    assert stored(client, runtime, user, subject) == (0, [])


@pytest.mark.usefixtures("private_allowed")
def test_a_slow_server_costs_the_time_limit_and_no_more(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, server: PhotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(runtime.settings, "photo_url_timeout_seconds", 1.0)
    started = time.monotonic()
    response = post_urls(client, user, subject, server.url("/slow.jpg"))
    assert time.monotonic() - started < 3.0  # the whole body would take 100 s, and every read is quick
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["detail"] == f"{server.url('/slow.jpg')}: no complete answer within 1 s"


@pytest.mark.usefixtures("private_allowed")
def test_every_bad_url_is_named_and_nothing_is_stored(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, server: PhotoServer
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/dog0.jpg"  # nothing listens there
    urls = [server.url("/dog0.jpg"), server.url("/missing.jpg"), server.url("/notes.jpg"), server.url("/loop"),
            closed, server.url("/dog1.jpg")]  # fmt: skip
    response = post_urls(client, user, subject, *urls)
    assert response.status_code == 422, response.text  # the reasons differ (422, 415): 422
    body = response.json()
    assert body["detail"] == "4 of 6 URLs were refused; nothing was stored."
    errors = {e["field"]: e["detail"] for e in body["errors"]}
    assert list(errors) == ["urls[1]", "urls[2]", "urls[3]", "urls[4]"]
    assert errors["urls[1]"] == f"{urls[1]}: the server answered HTTP 404"
    assert errors["urls[2]"].startswith(f"{urls[2]}: not a JPEG, PNG or WebP image")
    assert errors["urls[3]"] == f"{urls[3]}: more than 3 redirects"
    assert errors["urls[4]"].startswith(f"{closed}: could not be fetched (ConnectError")
    assert stored(client, runtime, user, subject) == (0, [])


@pytest.mark.usefixtures("private_allowed")
@pytest.mark.parametrize(("path", "status"), [("/notes.jpg", 415), ("/missing.jpg", 422)])
def test_one_reason_gives_its_own_status(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], server: PhotoServer, path: str, status: int
) -> None:
    response = post_urls(client, user, subject, server.url(path))
    assert response.status_code == status and response.json()["errors"][0]["field"] == "urls[0]"


@pytest.mark.usefixtures("private_allowed")
def test_too_many_urls_are_refused_before_any_fetch(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, server: PhotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    response = post_urls(client, user, subject, *[server.url("/dog0.jpg")] * 21)
    assert response.status_code == 413 and "at most 20" in response.json()["detail"]
    monkeypatch.setattr(runtime.settings, "max_photos_per_subject", 3)
    assert post_urls(client, user, subject, server.url("/dog0.jpg"), server.url("/dog1.jpg")).status_code == 201
    assert post_urls(client, user, subject, server.url("/dog0.jpg"), server.url("/dog1.jpg")).status_code == 409
    assert len(server.requests) == 2  # only the accepted request's
    empty = client.post(f"/v1/subjects/{subject['id']}/photos", json={"urls": []}, headers=auth(user))
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "urls"


@pytest.mark.usefixtures("private_allowed")
def test_another_users_subject_is_404_and_no_key_401(
    client: httpx.Client, user: dict[str, str], other_user: dict[str, str], subject: dict[str, Any],
    server: PhotoServer,
) -> None:  # fmt: skip
    assert post_urls(client, other_user, subject, server.url("/dog0.jpg")).status_code == 404
    anonymous = client.post(f"/v1/subjects/{subject['id']}/photos", json={"urls": [server.url("/dog0.jpg")]})
    assert anonymous.status_code == 401
    assert server.requests == []


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


@pytest.mark.usefixtures("private_allowed")
def test_fetching_blocks_neither_the_event_loop_nor_the_other_urls(
    client: httpx.Client, user: dict[str, str], subject: dict[str, Any], runtime: Any, server: PhotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The test client runs every request on one event loop: a fetch that blocked it would hold up /healthz."""
    monkeypatch.setattr(runtime.settings, "photo_url_timeout_seconds", 2.0)
    slow = threading.Thread(target=post_urls, args=(client, user, subject, server.url("/slow.jpg")))
    slow.start()
    while not server.requests:
        time.sleep(0.01)
    assert timed(lambda: client.get("/healthz")) < 0.5
    slow.join()
    # Four answers that each wait 0.8 s: one after the other would take 3.2 s.
    elapsed = timed(lambda: post_urls(client, user, subject, *[server.url("/delay.jpg")] * 4))
    assert elapsed < 2.4 and stored(client, runtime, user, subject)[0] == 4


def test_the_schema_documents_both_bodies(client: httpx.Client) -> None:
    body = client.get("/openapi.json").json()["paths"]["/v1/subjects/{subject_id}/photos"]["post"]["requestBody"]
    assert set(body["content"]) == {"multipart/form-data", "application/json"}
    assert body["content"]["application/json"]["schema"]["required"] == ["urls"]


HOSTILE = ["http://", "http://[::1", "http://a b/x.jpg", "http://ex\x00ample.com/", "http://x:99999/", "https://é.invalid/",
           "http://" + "a" * 300 + ".com/", "http://-/", "//no-scheme/x.jpg", "http://%/", "javascript:alert(1)",
           "http://[fe80::1%25eth0]/x.jpg", "http://0x7f.1/x.jpg", "http://2130706433/x.jpg"]  # fmt: skip


@pytest.mark.usefixtures("guard_on")
def test_hostile_urls_are_4xx_never_5xx(client: httpx.Client, user: dict[str, str], subject: dict[str, Any]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    response = post_urls(client, user, subject, *HOSTILE)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [f"urls[{i}]" for i in range(len(HOSTILE))]

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.sampled_from(["http://", "https://", ""]).flatmap(lambda s: st.text(min_size=1).map(s.__add__)),
                    min_size=1, max_size=3))  # fmt: skip
    def fuzz(urls: list[str]) -> None:
        assert 400 <= post_urls(client, user, subject, *urls).status_code < 500

    fuzz()
