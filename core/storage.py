"""Object storage: S3-compatible (AWS S3, MinIO, R2...) through boto3, or a local folder for the embedded mode.

`S3Storage` takes its boto3 client as an argument; `make_storage` builds the one the settings ask for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from core.errors import BlobNotFound, StorageUnavailable
from core.presign import S3Presigner, fast_presigner
from core.settings import Settings

CHUNK = 1024 * 1024
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0
R = TypeVar("R")
log = logging.getLogger(__name__)


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...
    def get(self, key: str) -> bytes: ...
    def iter_chunks(self, key: str) -> Iterator[bytes]: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def presigned_url(self, key: str, expires_in: int, filename: str | None = None) -> str: ...
    def check(self) -> None: ...


class S3Storage:
    def __init__(self, client: Any, bucket: str, presign_client: Any | None = None,
                 presigner: S3Presigner | None = None) -> None:  # fmt: skip
        """`presign_client`: the same credentials at the address clients reach (the signature covers the host);
        without one, links point where the service reaches the server. `presigner`: signs the links boto3 would,
        faster (`core.presign.fast_presigner`, which checks that they are the same)."""
        self.client = client
        self.bucket = bucket
        self.presign_client = presign_client or client
        self.presigner = presigner

    def _call(self, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise BlobNotFound(kwargs.get("Key", "")) from exc
            raise StorageUnavailable(f"storage refused {method}: {code}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"storage unreachable: {type(exc).__name__}") from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._call("put_object", Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        return bytes(self._call("get_object", Key=key)["Body"].read())

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        body = self._call("get_object", Key=key)["Body"]
        yield from body.iter_chunks(CHUNK)

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=key)

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        while True:
            listing = self._call("list_objects_v2", Prefix=prefix, MaxKeys=1000)
            keys = [{"Key": item["Key"]} for item in listing.get("Contents", [])]
            if not keys:
                return deleted
            self._call("delete_objects", Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=key)
        except BlobNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._call("head_object", Key=key)["ContentLength"])

    def presigned_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        if self.presigner is not None and self.presigner.handles(key):
            return self.presigner.url(key, expires_in, filename)
        params: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        return str(self.presign_client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in))

    def check(self) -> None:
        self._call("head_bucket")


@contextmanager
def _disk(action: str, key: str, missing_is_absent: bool = True) -> Iterator[None]:
    """A blob that is not there is BlobNotFound (when `missing_is_absent`); any other failure of the folder
    (unwritable, full, not a folder) is StorageUnavailable, a 503 like an S3 server that is down."""
    try:
        yield
    except FileNotFoundError as exc:
        if missing_is_absent:
            raise BlobNotFound(key) from exc
        raise StorageUnavailable(f"blob folder: cannot {action} {key!r}: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise StorageUnavailable(f"blob folder: cannot {action} {key!r}: {exc.strerror or exc}") from exc


class RetryingStorage:
    """A worker's storage for its jobs: a call the server does not answer (StorageUnavailable) is tried again with
    exponential backoff for up to `seconds`, then the last error is raised, as a worker's database writes are
    (`worker.lifecycle.retrying`). An S3 outage of seconds delays the job instead of costing it an attempt; and
    since a claimed job that cannot store anything no longer ends at once, a worker does not run through its
    queue's backlog during an outage, taking an attempt from each job. A missing blob (BlobNotFound) is an
    answer, not retried; streaming (`iter_chunks`) and signing links are passed through."""

    def __init__(self, inner: Storage, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner, self.seconds, self.sleep = inner, seconds, sleep

    def _retry(self, what: str, key: str, call: Callable[[], R]) -> R:
        deadline = time.monotonic() + self.seconds
        delay = RETRY_FIRST_S
        while True:
            try:
                return call()
            except StorageUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("storage %s of %s: %s; retrying in %.1f s", what, key, exc, delay)
                self.sleep(delay)
                delay = min(2 * delay, RETRY_MAX_S)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._retry("put", key, lambda: self.inner.put(key, data, content_type))

    def get(self, key: str) -> bytes:
        return self._retry("get", key, lambda: self.inner.get(key))

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        return self.inner.iter_chunks(key)

    def delete(self, key: str) -> None:
        self._retry("delete", key, lambda: self.inner.delete(key))

    def delete_prefix(self, prefix: str) -> int:
        return self._retry("delete", prefix, lambda: self.inner.delete_prefix(prefix))

    def exists(self, key: str) -> bool:
        return self._retry("head", key, lambda: self.inner.exists(key))

    def size(self, key: str) -> int:
        return self._retry("head", key, lambda: self.inner.size(key))

    def presigned_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        return self.inner.presigned_url(key, expires_in, filename)

    def check(self) -> None:
        self._retry("check", "the bucket", self.inner.check)


class LocalStorage:
    """Blobs as files under `root`; downloads go through the API's `/v1/files/{token}` route."""

    def __init__(self, root: Path, signer: DownloadSigner) -> None:
        self.root = root
        self.signer = signer

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"unsafe storage key {key!r}")
        return self.root / key

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._path(key)
        with _disk("write", key, missing_is_absent=False):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)  # readers never see half a blob

    def get(self, key: str) -> bytes:
        with _disk("read", key):
            return self._path(key).read_bytes()

    def iter_chunks(self, key: str) -> Iterator[bytes]:
        with _disk("read", key):
            handle = self._path(key).open("rb")
        with handle, _disk("read", key):
            while chunk := handle.read(CHUNK):
                yield chunk

    def delete(self, key: str) -> None:
        with _disk("delete", key, missing_is_absent=False):
            self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix.rstrip("/"))
        if self.root.exists() and not self.root.is_dir():  # else what lies under it would look deleted
            raise StorageUnavailable(f"blob folder {self.root} is not a folder")
        with _disk("delete", prefix, missing_is_absent=False):
            if base.is_dir():
                count = sum(1 for p in base.rglob("*") if p.is_file())
                shutil.rmtree(base)
                return count
            matches = [p for p in base.parent.glob(f"{base.name}*") if p.is_file()] if base.parent.is_dir() else []
            for path in matches:
                path.unlink(missing_ok=True)
            return len(matches)

    def exists(self, key: str) -> bool:
        with _disk("read", key, missing_is_absent=False):
            return self._path(key).is_file()

    def size(self, key: str) -> int:
        with _disk("read", key):
            return self._path(key).stat().st_size

    def presigned_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        return self.signer.url(key, int(time.time()) + expires_in, filename)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"blob folder unusable: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"blob folder {self.root} is not writable")


class DownloadSigner:
    """Signed, expiring download tokens for the local backend: base64(json{key, exp, name}).hmac."""

    def __init__(self, secret: str, base_url: str) -> None:
        self._secret = secret.encode()
        self.base_url = base_url.rstrip("/")

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def token(self, key: str, expires_at: int, filename: str | None = None) -> str:
        raw = json.dumps({"k": key, "e": expires_at, "n": filename}, separators=(",", ":"))
        payload = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        return f"{payload}.{self._mac(payload)}"

    def url(self, key: str, expires_at: int, filename: str | None = None) -> str:
        return f"{self.base_url}/v1/files/{self.token(key, expires_at, filename)}"

    def verify(self, token: str, now: float | None = None) -> tuple[str, str | None] | None:
        """The (key, filename) a token grants, or None when it is forged, malformed or expired."""
        if not token.isascii():  # tokens are base64url; compare_digest takes ASCII str only
            return None
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            key, expires_at, filename = str(data["k"]), int(data["e"]), data.get("n")
        except (ValueError, KeyError, TypeError):
            return None
        if expires_at < (now or time.time()):
            return None
        return key, filename


def make_s3_client(settings: Settings, endpoint_url: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=config,
    )


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        public = settings.s3_public_endpoint_url
        client = make_s3_client(settings)
        presign = make_s3_client(settings, public) if public else None
        fast = fast_presigner(presign or client, settings.s3_bucket, settings.s3_access_key_id,
                              settings.s3_secret_access_key)  # fmt: skip
        return S3Storage(client, settings.s3_bucket, presign, fast)
    return LocalStorage(settings.blob_dir, DownloadSigner(settings.secret_key, settings.base_url))
