from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from basemodel.vocab import RESERVED_TOKENS
from core.settings import DEFAULT_SUBJECT_TOKENS, Settings

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("outside", [
    {"database_url": "postgresql+psycopg://db/svdiff"},
    {"broker_url": "redis://redis:6379/0"},
    {"host": "0.0.0.0"},
])  # fmt: skip
def test_development_defaults_only_in_the_embedded_mode(outside: dict[str, str]) -> None:
    """The public development secret once signed a forged link with a real database and Redis behind it."""
    with pytest.raises(ValidationError, match="SVDIFF_SECRET_KEY"):
        Settings(_env_file=None, **outside)  # type: ignore[arg-type]
    assert Settings(_env_file=None, secret_key="r" * 40, **outside).environment == "development"  # type: ignore[arg-type]


@pytest.mark.parametrize("problem", [
    {"database_url": "sqlite:///var/svdiff.db"},
    {"allow_private_webhooks": True},
])  # fmt: skip
def test_production_refuses_sqlite_and_private_webhooks(problem: dict[str, object]) -> None:
    real = {"environment": "production", "secret_key": "s" * 40, "database_url": "postgresql+psycopg://db/svdiff",
            "broker_url": "redis://redis:6379/0", "storage": "s3", "s3_access_key_id": "a",
            "s3_secret_access_key": "b"}  # fmt: skip
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **(real | problem))  # type: ignore[arg-type]


def test_short_bootstrap_key_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(bootstrap_admin_key="short", _env_file=None)  # type: ignore[call-arg]


def test_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVDIFF_PORT", "9001")
    monkeypatch.setenv("SVDIFF_ALLOW_PRIVATE_WEBHOOKS", "true")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.port == 9001 and settings.allow_private_webhooks


def test_subject_tokens_default_to_the_bundled_models_reserved_identifiers() -> None:
    from basemodel import BASE_MODEL_PATH

    settings = Settings(base_model=str(BASE_MODEL_PATH), _env_file=None)  # type: ignore[call-arg]
    assert settings.subject_tokens == RESERVED_TOKENS
    assert Settings(_env_file=None).subject_tokens == RESERVED_TOKENS  # type: ignore[call-arg]


def test_subject_tokens_for_a_stable_diffusion_base() -> None:
    settings = Settings(base_model="runwayml/stable-diffusion-v1-5", _env_file=None)  # type: ignore[call-arg]
    assert settings.subject_tokens == DEFAULT_SUBJECT_TOKENS
    assert settings.subject_tokens != RESERVED_TOKENS and "sks" in settings.subject_tokens


def test_subject_tokens_from_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SVDIFF_SUBJECT_TOKENS", '["abc", "xyz"]')
    assert Settings(_env_file=None).subject_tokens == ("abc", "xyz")  # type: ignore[call-arg]


def test_settings_import_no_torch() -> None:
    code = "import sys, core.settings; core.settings.Settings(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_training_defaults_are_the_bundled_models_recipe_and_the_papers_elsewhere(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from basemodel import recipe

    bundled = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (bundled.default_training_steps, bundled.default_learning_rate, bundled.prompt_templates) == (
        recipe.STEPS, recipe.LEARNING_RATE, recipe.PROMPT_TEMPLATES)
    sd = Settings(_env_file=None, base_model="runwayml/stable-diffusion-v1-5")  # type: ignore[call-arg]
    assert (sd.default_training_steps, sd.default_learning_rate, sd.prompt_templates) == (400, 1e-3, ())
    assert (bundled.token_rows, bundled.token_rows_learning_rate) == (
        recipe.TOKEN_ROWS, recipe.TOKEN_ROWS_LEARNING_RATE)
    assert sd.token_rows is False  # the paper's recipe
    assert (bundled.mix_phrasings, sd.mix_phrasings) == (recipe.MIX_PHRASINGS, ())
    monkeypatch.setenv("SVDIFF_TOKEN_ROWS", "true")
    assert Settings(_env_file=None, base_model="runwayml/stable-diffusion-v1-5").token_rows  # type: ignore[call-arg]
    monkeypatch.delenv("SVDIFF_TOKEN_ROWS")
    monkeypatch.setenv("SVDIFF_DEFAULT_LEARNING_RATE", "5e-4")
    assert Settings(_env_file=None).default_learning_rate == 5e-4  # type: ignore[call-arg]


def test_by_default_no_running_task_outlives_its_message() -> None:
    """Redis hands an unacknowledged message to another worker after the visibility timeout: by default that is
    later than any task's hard time limit (the soft limit plus a minute)."""
    from core.celery_app import time_limits

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    hard = max(limit["time_limit"] for limit in time_limits(settings).values())
    assert settings.broker_visibility_timeout > hard
