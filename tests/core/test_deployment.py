"""The deployment files: `docker-compose config` accepts them, and they wire what the service needs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "SVDIFF_SECRET_KEY": "s" * 40,
    "SVDIFF_BOOTSTRAP_ADMIN_KEY": "k" * 40,
    "POSTGRES_PASSWORD": "pg-password",
    "MINIO_ROOT_PASSWORD": "minio-password",
    "MINIO_APP_PASSWORD": "minio-app-password",
}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install -y docker-compose)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SVDIFF_", "POSTGRES_", "MINIO_"))}
    return subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    result = compose_config(ENV)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_compose_config_passes_and_wires_every_service(config: dict[str, Any]) -> None:
    services = config["services"]
    expected = {
        "postgres",
        "redis",
        "minio",
        "bucket",
        "migrate",
        "api",
        "worker-cpu",
        "worker-webhooks",
        "worker-training",
        "worker-inference",
    }
    assert set(services) == expected
    assert "--appendonly" in services["redis"]["command"]
    assert {"postgres-data", "redis-data", "minio-data"} <= set(config["volumes"])
    assert services["migrate"]["command"] == ["svdiff-service", "migrate"]
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("worker-training", "worker-inference"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
        assert services[name]["build"]["dockerfile"].endswith("Dockerfile.worker")
    assert services["worker-training"]["command"][-1] == "training"
    assert services["worker-inference"]["command"][-1] == "inference"
    assert "--beat" in services["worker-cpu"]["command"]
    assert services["worker-webhooks"]["command"][services["worker-webhooks"]["command"].index("--queues") + 1] == (
        "webhooks")
    assert services["api"]["environment"]["SVDIFF_ENVIRONMENT"] == "production"
    wired = ("api", "worker-training", "worker-inference")
    base_models = {services[name]["environment"]["SVDIFF_BASE_MODEL"] for name in wired}
    assert base_models == {"stable-diffusion-v1-5/stable-diffusion-v1-5"}  # the API picks tokens for that tokenizer


def test_compose_keeps_storage_and_metrics_private(config: dict[str, Any]) -> None:
    services = config["services"]
    ports = services["minio"]["ports"]
    published = [p if isinstance(p, str) else f"{p.get('host_ip', '')}:{p.get('published')}" for p in ports]
    assert all(p.startswith("127.0.0.1:") for p in published), ports  # not published on every interface
    env = services["api"]["environment"]
    assert env["SVDIFF_S3_ACCESS_KEY_ID"] == "svdiff-app" != services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert env["SVDIFF_S3_SECRET_ACCESS_KEY"] == "minio-app-password"  # not MinIO's root credentials
    assert env["SVDIFF_S3_PUBLIC_ENDPOINT_URL"] == "http://localhost:9000"  # signed links clients can reach
    assert "svdiff-app" in " ".join(services["bucket"]["entrypoint"])


def test_compose_refuses_missing_secrets() -> None:
    result = compose_config({k: v for k, v in ENV.items() if k != "SVDIFF_SECRET_KEY"})
    assert result.returncode != 0 and "SVDIFF_SECRET_KEY" in result.stderr


def test_api_image_has_no_torch_and_worker_image_has_cuda() -> None:
    api = [line for line in (ROOT / "docker" / "Dockerfile.api").read_text().splitlines() if not line.startswith("#")]
    worker = (ROOT / "docker" / "Dockerfile.worker").read_text()
    assert any('pip install ".[postgres]"' in line for line in api)
    assert not any("torch" in line or "method" in line or "svdiff " in line for line in api)
    assert "FROM nvidia/cuda:" in worker and '".[method,postgres]"' in worker and "download.pytorch.org" in worker
