from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_embedded_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "development"
    assert settings.db_url.startswith("sqlite:///") and settings.db_url.endswith("svdiff.db")
    assert settings.broker_url == "memory://" and settings.storage == "local"
    assert settings.embedded_broker and settings.base_url == "http://127.0.0.1:8000"


def test_production_refuses_default_secrets() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(environment="production", _env_file=None)  # type: ignore[call-arg]
    message = str(caught.value)
    for name in ("SVDIFF_SECRET_KEY", "SVDIFF_DATABASE_URL", "SVDIFF_BROKER_URL"):
        assert name in message


def test_production_with_real_settings() -> None:
    settings = Settings(  # type: ignore[call-arg]
        environment="production", secret_key="s" * 40, database_url="postgresql+psycopg://db/svdiff",
        broker_url="redis://redis:6379/0", storage="s3", s3_access_key_id="a", s3_secret_access_key="b",
        _env_file=None,
    )  # fmt: skip
    assert settings.environment == "production"


def test_short_bootstrap_key_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(bootstrap_admin_key="short", _env_file=None)  # type: ignore[call-arg]


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVDIFF_PORT", "9001")
    monkeypatch.setenv("SVDIFF_ALLOW_PRIVATE_WEBHOOKS", "true")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.port == 9001 and settings.allow_private_webhooks
