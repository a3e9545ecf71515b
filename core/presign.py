"""Presigned S3 GET links (SigV4 query signing, the algorithm botocore's `S3SigV4QueryAuth` runs), made without
boto3's per-call machinery (endpoint rules, parameter validation, serialisation, event hooks): about 1 ms of CPU a
link there, which made a list of 100 generations, their images signed, spend half its time signing (README "API
under load").

It is used only where it gives exactly boto3's link: `fast_presigner` derives the endpoint, bucket path, region and
access key from a link boto3 itself signed, signs the same key at the same instant, and keeps the fast signer only if
both links are equal; keys outside a plain alphabet, and credentials other than a static key pair, stay with boto3.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

log = logging.getLogger(__name__)
PROBE_KEY = "svdiff-presign-probe/0.png"
PLAIN_KEY = re.compile(r"[A-Za-z0-9_.~-]+(/[A-Za-z0-9_.~-]+)*")  # no empty, `.` or `..` segment (checked below)
SAFE = "-_.~"  # botocore.utils.percent_encode's unreserved characters


def _encode(value: str) -> str:
    return quote(value, safe=SAFE)


class S3Presigner:
    """Signs GET links to keys of one bucket, as botocore does for a path-style s3v4 client."""

    def __init__(self, origin: str, bucket_path: str, host: str, region: str, access_key: str, secret_key: str):
        self.origin, self.bucket_path, self.host = origin, bucket_path, host  # "http://h:9000", "/svdiff", "h:9000"
        self.region, self.access_key, self.secret_key = region, access_key, secret_key
        self._signing_keys: dict[str, bytes] = {}  # date -> key: one HMAC chain a day, not four per link

    @staticmethod
    def handles(key: str) -> bool:
        return PLAIN_KEY.fullmatch(key) is not None and not any(p in {".", ".."} for p in key.split("/"))

    def _signing_key(self, date: str) -> bytes:
        key = self._signing_keys.get(date)
        if key is None:
            key = f"AWS4{self.secret_key}".encode()
            for part in (date, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._signing_keys = {date: key}
        return key

    def url(self, key: str, expires_in: int, filename: str | None = None, now: datetime | None = None) -> str:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        date = stamp[:8]
        scope = f"{date}/{self.region}/s3/aws4_request"
        path = f"{self.bucket_path}/{quote(key, safe='/~')}"
        params = [("response-content-disposition", f'attachment; filename="{filename}"')] if filename else []
        params += [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"{self.access_key}/{scope}"),
            ("X-Amz-Date", stamp),
            ("X-Amz-Expires", str(expires_in)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        encoded = [(_encode(name), _encode(value)) for name, value in params]
        query = "&".join(f"{name}={value}" for name, value in encoded)
        canonical_query = "&".join(f"{name}={value}" for name, value in sorted(encoded))
        canonical = f"GET\n{path}\n{canonical_query}\nhost:{self.host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(date), to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self.origin}{path}?{query}&X-Amz-Signature={signature}"


def _host(scheme: str, hostname: str, port: int | None) -> str:
    """The host header botocore signs: no default port."""
    return hostname if port is None or port == {"http": 80, "https": 443}.get(scheme) else f"{hostname}:{port}"


def fast_presigner(client: Any, bucket: str, access_key: str | None, secret_key: str | None) -> S3Presigner | None:
    """A fast signer for `client`'s links to `bucket` that gives exactly the links boto3 gives, else None."""
    if not access_key or not secret_key:
        return None  # the default credential chain (roles, session tokens): boto3's business
    try:
        reference = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": PROBE_KEY},
                                                  ExpiresIn=3600)  # fmt: skip
        parts = urlsplit(reference)
        query = {name: values[0] for name, values in parse_qs(parts.query).items()}
        signed_by, _, region, service, _ = query["X-Amz-Credential"].split("/")
        suffix = "/" + PROBE_KEY
        if (service != "s3" or signed_by != access_key or not parts.path.endswith(suffix) or parts.hostname is None
                or ":" in parts.hostname or "X-Amz-Security-Token" in query):  # fmt: skip
            return None
        host = _host(parts.scheme, parts.hostname, parts.port)
        origin, bucket_path = f"{parts.scheme}://{parts.netloc}", parts.path[: -len(suffix)]
        presigner = S3Presigner(origin, bucket_path, host, region, access_key, secret_key)
        when = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if presigner.url(PROBE_KEY, 3600, now=when) != reference:
            log.warning("the fast S3 link signer does not match boto3's links here; boto3 signs them")
            return None
        return presigner
    except Exception:  # an unexpected link shape: boto3 signs
        log.warning("the fast S3 link signer could not be checked; boto3 signs the links", exc_info=True)
        return None
