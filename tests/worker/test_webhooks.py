from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.addresses import UnsafeUrl, check_url, pinned
from core.webhooks import sign, verify
from models import Training, WebhookDelivery
from tests.api.helpers import subject_with_photos, train
from tests.conftest import auth
from tests.worker.fake_method import FakeMethod
from worker.lifecycle import run_job
from worker.tasks.training import train_work
from worker.webhooks import backoff_seconds, deliver, post


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = len(receiver.requests) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.requests) >= count, f"got {len(self.requests)} of {count} webhook requests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=1)
    yield r
    r.server.shutdown()


def test_every_status_change_is_delivered_signed_by_the_cpu_worker(
    client: httpx.Client, user: dict[str, str], runtime: Any, fake_method: FakeMethod, receiver: Receiver,
    cpu_worker: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(runtime.settings, "allow_private_webhooks", True)
    subject = subject_with_photos(client, user)
    training = train(client, user, [subject["id"]], steps=3, webhook_url=receiver.url).json()
    assert run_job(runtime, Training, training["id"], "w1", train_work(runtime)) == "succeeded"
    receiver.wait_for(3)  # running (refused once, then retried with the same id) and succeeded
    deliveries = [(h, b) for h, b in receiver.requests]
    for headers, body in deliveries:
        assert verify(user["secret"], headers, body), "bad signature"
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120
    first_id = deliveries[0][0]["webhook-id"]  # refused with a 500, so retried with the same webhook-id
    assert [h["webhook-id"] for h, _ in deliveries].count(first_id) == 2
    events = {json.loads(b)["type"]: json.loads(b) for _, b in deliveries}
    assert set(events) == {"training.running", "training.succeeded"}
    final = client.get(f"/v1/trainings/{training['id']}", headers=auth(user)).json()
    assert events["training.succeeded"]["data"]["status"] == "succeeded"
    assert events["training.succeeded"]["data"]["checkpoint_id"] == final["checkpoint_id"]
    assert events["training.running"]["data"]["status"] == "running"


def test_cancel_of_a_queued_job_is_announced(
    client: httpx.Client, user: dict[str, str], runtime: Any, cpu_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "allow_private_webhooks", True)
    receiver = Receiver()
    try:
        generation = client.post(
            "/v1/generations", json={"prompt": "a dog", "webhook_url": receiver.url}, headers=auth(user)
        ).json()
        client.post(f"/v1/generations/{generation['id']}/cancel", headers=auth(user))
        receiver.wait_for(1)
        headers, body = receiver.requests[0]
        assert verify(user["secret"], headers, body)
        assert json.loads(body)["type"] == "generation.canceled"
    finally:
        receiver.server.shutdown()


def test_delivery_to_a_private_address_is_refused(
    client: httpx.Client, user: dict[str, str], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "allow_private_webhooks", True)
    generation = client.post(
        "/v1/generations", json={"prompt": "a dog", "webhook_url": "http://127.0.0.1:9/x"}, headers=auth(user)
    ).json()
    monkeypatch.setattr(runtime.settings, "allow_private_webhooks", False)  # e.g. DNS changed since creation
    client.post(f"/v1/generations/{generation['id']}/cancel", headers=auth(user))
    with runtime.sessions() as session:
        delivery_id = session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.job_id == generation["id"]))
    deadline = time.monotonic() + 20
    while True:  # the CPU worker process may hold this delivery's lease for its own attempt meanwhile
        assert deliver(runtime, delivery_id) is None
        with runtime.sessions() as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            assert delivery is not None
            if delivery.status == "abandoned" or time.monotonic() > deadline:
                break
        time.sleep(0.2)
    assert delivery.status == "abandoned" and "refused" in (delivery.last_error or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8000/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://100.100.100.200/latest/meta-data",  # shared address space (100.64.0.0/10): a cloud's metadata
        "http://100.64.0.1/hook",
        "http://[2002:7f00:1::]/hook",  # 6to4 wrapping 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "http://[::127.0.0.1]/hook",  # IPv4-compatible (::/96) loopback
        "http://[::a9fe:a9fe]/hook",  # IPv4-compatible metadata address
        "http://[64:ff9b:1::808:808]/hook",  # local-use NAT64 (64:ff9b:1::/48)
        "http://[fec0::1]/hook",  # site-local (fec0::/10)
        "http://224.0.0.1/hook",
        "http://[ff0e::1]/hook",
        "file:///etc/passwd",
        "http://user:pw@example.com/hook",
    ],
)
def test_ssrf_guard_refuses(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_private=False)


def test_ssrf_guard_allows_public_and_the_test_setting() -> None:
    check_url("https://93.184.215.14/hook", allow_private=False)
    check_url("http://127.0.0.1:8000/hook", allow_private=True)


def test_signature_matches_standard_webhooks_example() -> None:
    # The reference vector of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_backoff_retries_for_at_least_a_day(runtime: Any) -> None:
    settings = runtime.settings
    total = sum(backoff_seconds(settings, attempt) for attempt in range(1, settings.webhook_max_attempts))
    assert total >= 24 * 3600
    assert backoff_seconds(settings, 1) < backoff_seconds(settings, 2) <= settings.webhook_backoff_max_seconds


def test_a_host_that_does_not_resolve_at_delivery_is_retried(
    user: dict[str, str], runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from core.db import session_scope

    with session_scope(runtime.sessions) as session:  # made here: no task is sent, no CPU worker races this test
        delivery = WebhookDelivery(user_id=user["id"], url="https://hooks.example.com/x", event_type="job.canceled",
                                   payload="{}")  # fmt: skip
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    monkeypatch.setattr(runtime.settings, "allow_private_webhooks", False)

    def resolver_down(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", resolver_down)
    assert deliver(runtime, delivery_id) == backoff_seconds(runtime.settings, 1)
    with runtime.sessions() as session:
        stored = session.get(WebhookDelivery, delivery_id)
        assert stored is not None and stored.status == "pending" and stored.attempts == 1
        assert "does not resolve" in (stored.last_error or "")


def test_delivery_connects_to_the_address_that_was_checked(receiver: Receiver) -> None:
    """Pinned: no second DNS lookup (rebinding) between the check and the connection; the Host is the name."""
    port = receiver.server.server_address[1]
    status, _ = post(f"http://hooks.invalid:{port}/hook", {}, b"{}", 5.0, address="127.0.0.1")
    assert status == 500  # the receiver fails its first request: it was reached
    assert receiver.requests[0][0]["host"] == f"hooks.invalid:{port}"
    assert pinned("https://hooks.example.com/x?a=1", "2606:4700::1111") == (
        "https://[2606:4700::1111]/x?a=1",
        "hooks.example.com",
        "hooks.example.com",
    )


class _Receiver:
    """A receiver on loopback that misbehaves: trickles its answer a byte at a time, or answers 300 MB."""

    def __init__(self, mode: str) -> None:
        import socket
        import threading

        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.mode, self.sent = mode, 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import time

        conn, _ = self.server.accept()
        conn.recv(65536)
        try:
            if self.mode == "trickle":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                    conn.sendall(bytes([byte]))
                    self.sent += 1
                    time.sleep(0.5)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 314572800\r\n\r\n")
                block = b"x" * 65536
                while self.sent < 314572800:
                    conn.sendall(block)
                    self.sent += len(block)
        except OSError:
            pass
        finally:
            conn.close()


def test_a_trickling_receiver_costs_a_delivery_its_deadline_and_no_more() -> None:
    import time

    from worker.webhooks import post

    receiver = _Receiver("trickle")
    started = time.monotonic()
    status, error = post(f"http://127.0.0.1:{receiver.port}/hook", {}, b"{}", deadline=1.5)
    assert time.monotonic() - started < 2.5  # was 16 s for a byte every 2 s
    assert status is None and "within 1.5 s" in (error or "")


def test_a_huge_answer_is_not_read_whole() -> None:
    import time

    from worker.webhooks import ANSWER_BYTES, post

    receiver = _Receiver("huge")
    started = time.monotonic()
    status, error = post(f"http://127.0.0.1:{receiver.port}/hook", {}, b"{}", deadline=10)
    assert (status, error) == (200, None) and time.monotonic() - started < 5
    assert ANSWER_BYTES <= 4096 and receiver.sent < 300 * 1024 * 1024  # it stopped reading long before the end


def test_no_row_lock_is_held_while_the_receiver_answers(runtime, client, user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """During the POST another transaction can lock the delivery row at once (it was held FOR UPDATE before)."""
    from sqlalchemy import text

    from core.db import session_scope
    from models import WebhookDelivery
    from worker import webhooks

    with session_scope(runtime.sessions) as session:
        delivery = WebhookDelivery(user_id=user["id"], url="http://127.0.0.1:9/hook", event_type="x", payload="{}")
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    seen: list[bool] = []

    def post(url: str, headers: dict[str, str], body: bytes, deadline: float, address: str | None = None):  # type: ignore[no-untyped-def]
        with runtime.engine.connect() as conn:
            conn.execute(text("SET lock_timeout = '500ms'"))
            conn.execute(text("SELECT id FROM webhook_deliveries WHERE id = :id FOR UPDATE"), {"id": delivery_id})
            seen.append(True)
            conn.rollback()
        return 200, None

    monkeypatch.setattr(webhooks, "post", post)
    settings = runtime.settings.model_copy(update={"allow_private_webhooks": True})
    import dataclasses

    assert webhooks.deliver(dataclasses.replace(runtime, settings=settings), delivery_id) is None
    assert seen == [True]
    with session_scope(runtime.sessions) as session:
        done = session.get(WebhookDelivery, delivery_id)
        assert done.status == "delivered" and done.leased_until is None
