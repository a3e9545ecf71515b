"""One typed settings object, read from the environment (prefix ``SVDIFF_``).

With no configuration at all the service runs embedded: SQLite and a blob folder under ``./var``, an in-process
broker and worker, the bundled base model on the CPU. Production differs only in these settings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "development-only-secret-key-change-me"
# Identifiers for Stable Diffusion bases: short rare strings, as DreamBooth practice picks them (few characters, no
# common meaning: no brand or acronym such as "kfc" whose prior the subject would inherit); the first one the user's
# subjects do not use names a new subject. The bundled base model has its own list
# (`basemodel.vocab.RESERVED_TOKENS`: words its training captions never contain), used when it is the base.
DEFAULT_SUBJECT_TOKENS = (
    "sks", "zwx", "qlt", "vrk", "pfy", "ohwx", "xjq", "tyk", "wzv", "gmz",
    "dqr", "jnx", "ykr", "vxl", "zqp", "rwq",
)  # fmt: skip


def _bundled_base_model() -> Path | None:
    """Where the bundled small base model lives, when the ``basemodel`` package is installed."""
    try:
        from basemodel import BASE_MODEL_PATH  # lazy; the package's top level imports nothing heavy

        return Path(BASE_MODEL_PATH)
    except Exception:  # absent or broken package
        return None


def _default_base_model() -> str:
    """The bundled small base model when the ``basemodel`` package is installed, else its usual name."""
    bundled = _bundled_base_model()
    return str(bundled) if bundled is not None else "basemodel"


def default_subject_tokens(base_model: str) -> tuple[str, ...]:
    """The bundled base model's reserved identifiers when it is the base (words no caption of its training data
    contains, each one token of its tokenizer), else rare words of Stable Diffusion's CLIP tokenizer."""
    bundled = _bundled_base_model()
    if bundled is not None and Path(base_model).expanduser().resolve() == bundled.resolve():
        try:
            from basemodel.vocab import RESERVED_TOKENS  # pure Python: no torch

            return tuple(RESERVED_TOKENS)
        except Exception:
            pass
    return DEFAULT_SUBJECT_TOKENS


def recipe_defaults(base_model: str) -> dict[str, Any]:
    """Training defaults: the bundled base model's calibrated recipe (basemodel.recipe) when it is the base, else
    the paper's (lr 1e-3, 400 steps at batch 1, one instance prompt)."""
    bundled = _bundled_base_model()
    if bundled is not None and Path(base_model).expanduser().resolve() == bundled.resolve():
        try:
            from basemodel import recipe  # pure Python: no torch

            return {"default_training_steps": recipe.STEPS, "default_learning_rate": recipe.LEARNING_RATE,
                    "prompt_templates": recipe.PROMPT_TEMPLATES, "token_rows": recipe.TOKEN_ROWS,
                    "token_rows_learning_rate": recipe.TOKEN_ROWS_LEARNING_RATE,
                    "mix_phrasings": recipe.MIX_PHRASINGS}  # fmt: skip
        except Exception:
            pass
    return {"default_training_steps": 400, "default_learning_rate": 1e-3, "prompt_templates": (), "token_rows": False,
            "mix_phrasings": ()}  # fmt: skip


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SVDIFF_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    secret_key: str = DEV_SECRET_KEY  # signs local download links
    data_dir: Path = Path("var")
    database_url: str | None = None  # default: sqlite:///<data_dir>/svdiff.db
    # Connections each process may hold (PostgreSQL): pool_size kept open, max_overflow more under load. Every
    # API process and worker process has its own pool: their sum must stay below max_connections.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    broker_url: str = "memory://"
    bootstrap_admin_key: str | None = Field(default=None, min_length=32)

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = None  # default: http://<host>:<port>
    web_app: bool | None = None  # the web app at / (api/web); unset: on in development, off in production

    # Storage
    storage: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None  # default: <data_dir>/blobs
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None  # where clients reach the server, for signed links (default: the above)
    s3_bucket: str = "svdiff"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    presign_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # Uploads
    max_photo_bytes: int = 20 * 1024 * 1024
    max_photo_pixels: int = 40_000_000
    min_photo_side: int = 256
    max_photos_per_subject: int = 20  # also the most photos (files or URLs) one request adds
    photo_url_timeout_seconds: float = Field(default=10.0, gt=0)  # wall clock for one photo URL, redirects included
    subject_tokens: tuple[str, ...] = ()  # default: default_subject_tokens(base_model)

    # Jobs and workers
    max_job_attempts: int = Field(default=3, ge=1)
    # A lost worker's job is taken over within this plus one reconcile interval; its heartbeat beats 4 times in it.
    heartbeat_timeout_seconds: int = Field(default=20, ge=5)
    requeue_after_seconds: int = Field(default=30, ge=5)
    reconcile_every_seconds: float = Field(default=60.0, gt=0)
    broker_visibility_timeout: int = Field(default=7 * 3600, ge=10)  # above the longest task's hard time limit
    broker_transport_options: dict[str, Any] = Field(default_factory=dict)  # extra kombu options (JSON)
    progress_interval_seconds: float = 1.0
    # Queued and running jobs per user and queue: past it, a create is a 429 naming the limit.
    max_active_jobs_per_user: dict[str, int] = Field(default_factory=lambda: {"training": 4, "inference": 32})
    db_retry_seconds: float = Field(default=120.0, ge=0)  # a worker's progress and result writes wait this long
    # A worker's storage calls for a job (photos, saved state, outputs) wait this long for an S3 server that does
    # not answer, instead of failing the attempt at once (core.storage.RetryingStorage)
    storage_retry_seconds: float = Field(default=120.0, ge=0)
    # A running job that makes no step for this long (before its first: for prepare_timeout) stops beating and
    # is taken over once its heartbeat is stale.
    step_timeout_seconds: float = Field(default=300.0, gt=0)
    prepare_timeout_seconds: float = Field(default=1800.0, gt=0)  # loading, SVD, class images
    # Celery's soft and hard time limits per task kind (the hard one a minute after the soft one).
    training_time_limit_seconds: int = Field(default=6 * 3600, ge=60)
    inference_time_limit_seconds: int = Field(default=1800, ge=60)
    lora_export_pending_seconds: float = Field(default=300.0, gt=0)  # a LoRA export asked for is not asked again
    default_training_steps: int = 400  # unset: recipe_defaults(base_model)
    max_training_steps: int = 5000
    default_learning_rate: float = 1e-3  # unset: recipe_defaults(base_model)
    prompt_templates: tuple[str, ...] = ()  # extra instance-prompt phrasings; unset: recipe_defaults(base_model)
    token_rows: bool = False  # identifiers learn their own embedding row (svdiff token rows); unset: recipe_defaults
    token_rows_learning_rate: float = Field(default=3e-3, ge=0)
    mix_phrasings: tuple[tuple[str, str], ...] = ()  # extra Cut-Mix (instance, prior) phrasings; unset: recipe_defaults
    checkpoint_every_steps: int = Field(default=50, ge=1)

    # Rate limits per API key, in fixed windows; counted in Redis when the broker (or rate_limit_storage) is Redis
    rate_limit_enabled: bool = True
    rate_limit_requests: int = Field(default=600, ge=1)  # every request that carries a key
    rate_limit_jobs: int = Field(default=60, ge=1)  # POSTs that create a training, generation or edit
    rate_limit_window_seconds: int = Field(default=60, ge=1)
    rate_limit_failures: int = Field(default=60, ge=1)  # failed authentications per client address
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # any body but a multipart upload
    metrics_token: str | None = None  # /metrics wants `Authorization: Bearer <token>`; unset: open in development,
    # off (404) in production
    rate_limit_storage: str | None = None  # "memory://" or a redis:// URL; default: the broker

    # Live job events (server-sent events)
    max_event_streams_per_user: int = Field(default=8, ge=1)  # open at once, per API process
    events_heartbeat_seconds: float = Field(default=15.0, gt=0)  # a comment line, so proxies keep the stream
    events_min_interval_seconds: float = Field(default=0.5, ge=0)  # between two reads of one stream's job
    events_reread_seconds: float = Field(default=60.0, gt=0)  # a read without a notice, should one be lost

    # Webhooks
    allow_private_webhooks: bool = False  # lifts the outbound address guard: webhooks and photo URLs (tests only)
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = Field(default=31, ge=1)  # with the backoff below: just over a day
    webhook_backoff_base_seconds: float = Field(default=30.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)

    # The method
    base_model: str = Field(default_factory=_default_base_model)
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    svd_cache_dir: Path | None = None  # default: <data_dir>/svd-cache
    lora_ranks: tuple[int, ...] = (4, 8, 16, 32, 64)
    class_images: int = Field(default=200, ge=1)  # prior-preservation images per class word (shared by subjects)
    class_image_steps: int = Field(default=50, ge=1)  # DDIM steps to make each of them
    edit_finetune_steps: int = Field(default=300, ge=1)  # single-image editing: shift fine-tuning steps

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, values: Any) -> Any:
        if isinstance(values, dict):
            base = values.get("base_model") or _default_base_model()
            values = recipe_defaults(str(base)) | values
        return values

    @model_validator(mode="after")
    def _default_subject_tokens(self) -> Self:
        if not self.subject_tokens:
            self.subject_tokens = default_subject_tokens(self.base_model)
        return self

    @model_validator(mode="after")
    def _refuse_development_defaults_outside_the_embedded_mode(self) -> Self:
        weak_secret = self.secret_key == DEV_SECRET_KEY or len(self.secret_key) < 32
        if self.environment == "development":
            # The public development secret signs download links: only where nothing but this machine's own
            # loopback can reach the service and its data (SQLite, the in-process broker) may it stay.
            beyond = [name for name, outside in (
                ("a database other than SQLite", not self.db_url.startswith("sqlite")),
                ("a real broker", not self.embedded_broker),
                ("a non-loopback bind address", self.host not in LOOPBACK_HOSTS),
            ) if outside]  # fmt: skip
            if beyond and weak_secret:
                raise ValueError(f"development mode with {', '.join(beyond)} needs SVDIFF_SECRET_KEY set to a random "
                                 "string of at least 32 characters (the development default is public)")  # fmt: skip
            return self
        problems = []
        if weak_secret:
            problems.append("SVDIFF_SECRET_KEY must be set to a random string of at least 32 characters")
        if self.database_url is None or self.database_url.startswith("sqlite"):
            problems.append("SVDIFF_DATABASE_URL must name a real database (postgresql+psycopg://...), not SQLite")
        if self.broker_url.startswith("memory://"):
            problems.append("SVDIFF_BROKER_URL must name a real broker (redis://...)")
        if self.storage == "s3" and not (self.s3_access_key_id and self.s3_secret_access_key):
            problems.append("SVDIFF_S3_ACCESS_KEY_ID and SVDIFF_S3_SECRET_ACCESS_KEY must be set")
        if self.allow_private_webhooks:
            problems.append("SVDIFF_ALLOW_PRIVATE_WEBHOOKS is for tests and development only")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'svdiff.db'}"

    @property
    def blob_dir(self) -> Path:
        return self.storage_dir or self.data_dir / "blobs"

    @property
    def svd_cache_path(self) -> Path:
        return self.svd_cache_dir or self.data_dir / "svd-cache"

    @property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def web_app_enabled(self) -> bool:
        return self.web_app if self.web_app is not None else self.environment == "development"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("memory://")


@lru_cache
def get_settings() -> Settings:
    return Settings()
