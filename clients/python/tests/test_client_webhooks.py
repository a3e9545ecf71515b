from __future__ import annotations

import base64
import json
import secrets
import time

import pytest
from svdiff_client import WebhookVerificationError, verify_webhook
from svdiff_client.webhooks import sign

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()  # as the service makes them
BODY = json.dumps({"type": "training.succeeded", "data": {"id": "job-1", "status": "succeeded"}}).encode()


def headers(body: bytes = BODY, secret: str = SECRET, msg_id: str = "msg_1", at: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(body, msg_id, timestamp, secret)}  # fmt: skip


def test_the_standard_webhooks_reference_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signed = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
              "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}  # fmt: skip
    assert verify_webhook(body, signed, secret, now=1614265330 + 10) == {"test": 2432232314}


def test_what_the_service_signs_verifies() -> None:
    """Signed by the service's own function (core.webhooks.sign), as its webhook worker sends it."""
    service = pytest.importorskip("core.webhooks")
    timestamp = int(time.time())
    sent = {"webhook-id": "d-1", "webhook-timestamp": str(timestamp),
            "webhook-signature": service.sign(SECRET, "d-1", timestamp, BODY)}  # fmt: skip
    assert verify_webhook(BODY, sent, SECRET)["type"] == "training.succeeded"
    assert service.verify(SECRET, headers(), BODY)  # and the service accepts what this SDK signs
    plain = "not-a-whsec-secret"
    sent["webhook-signature"] = service.sign(plain, "d-1", timestamp, BODY)
    assert verify_webhook(BODY, sent, plain)["data"]["id"] == "job-1"


def test_header_names_in_any_case_and_text_payloads() -> None:
    upper = {k.title(): v for k, v in headers().items()}
    assert verify_webhook(BODY.decode(), upper, SECRET)["data"]["status"] == "succeeded"


def test_one_matching_signature_among_several_is_enough() -> None:
    good = headers()
    other = sign(BODY, "msg_1", int(good["webhook-timestamp"]), "whsec_" + base64.b64encode(b"x" * 24).decode())
    good["webhook-signature"] = f"v1,bm9wZQ== {other} v2,whatever {good['webhook-signature']}"
    verify_webhook(BODY, good, SECRET)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-signature": "v1,AAAA"}, "no signature matches"),
        ({"webhook-id": "msg_2"}, "no signature matches"),
        ({"webhook-timestamp": "soon"}, "not a number"),
    ],
)
def test_tampered_headers_are_refused(change: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookVerificationError, match=reason):
        verify_webhook(BODY, {**headers(), **change}, SECRET)


def test_a_changed_body_or_another_secret_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_webhook(BODY.replace(b"succeeded", b"failed"), headers(), SECRET)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify_webhook(BODY, headers(), "whsec_" + base64.b64encode(b"k" * 24).decode())


def test_timestamps_outside_the_tolerance_are_refused() -> None:
    now = int(time.time())
    verify_webhook(BODY, headers(at=now - 299), SECRET, now=now)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(BODY, headers(at=now - 301), SECRET, now=now)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_webhook(BODY, headers(at=now + 301), SECRET, now=now)
    verify_webhook(BODY, headers(at=now - 3000), SECRET, now=now, tolerance=3600)


def test_missing_headers_and_bad_secrets() -> None:
    partial = headers()
    del partial["webhook-signature"]
    with pytest.raises(WebhookVerificationError, match="missing header webhook-signature"):
        verify_webhook(BODY, partial, SECRET)
    with pytest.raises(WebhookVerificationError, match="base64"):
        verify_webhook(BODY, headers(), "whsec_***")


def test_a_signed_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="not JSON"):
        verify_webhook(b"nope", headers(b"nope"), SECRET)
    with pytest.raises(WebhookVerificationError, match="not a JSON object"):
        verify_webhook(b"[1]", headers(b"[1]"), SECRET)
