"""The deployment files: `docker-compose config` accepts them, and they wire what the service needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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
        "proxy",
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


def test_the_api_scales_behind_the_proxy(config: dict[str, Any]) -> None:
    """`--scale api=N` needs the API to publish no host port; the proxy holds the one port and finds the replicas
    by name at request time."""
    services = config["services"]
    assert "ports" not in services["api"] and services["api"]["expose"] == ["8000"]
    ports = services["proxy"]["ports"]
    assert [p["target"] if isinstance(p, dict) else int(str(p).rsplit(":", 1)[-1]) for p in ports] == [8000]
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in services["proxy"]["volumes"]]
    assert any(m.startswith(str(ROOT / "docker" / "nginx.conf")) and ":/etc/nginx/nginx.conf" in m for m in mounts)
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    assert "set $api http://api:8000;" in conf and "proxy_pass $api;" in conf and "resolver 127.0.0.11" in conf
    assert "proxy_buffering off;" in conf  # live job events pass as they are sent
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"  # the client's address, not the proxy's


def concurrency(service: dict[str, Any]) -> int:
    """Processes of a service that hold a database pool: uvicorn's workers for the API (docker/Dockerfile.api),
    Celery's --concurrency (prefork children) for a worker."""
    command = service.get("command")
    if command is None:
        dockerfile = (ROOT / "docker" / "Dockerfile.api").read_text()
        return int(dockerfile.split('"--workers", "', 1)[1].split('"', 1)[0])
    return int(command[command.index("--concurrency") + 1]) if "--concurrency" in command else 1


def test_database_pools_fit_postgres_at_scale(config: dict[str, Any]) -> None:
    """The README's sizing rule holds for the shipped settings: at 4 API replicas and 8 GPU workers per queue, the
    pools of every process together stay below max_connections (less the 3 kept for superusers)."""
    services = config["services"]
    scale = {"api": 4, "worker-training": 8, "worker-inference": 8, "worker-cpu": 1, "worker-webhooks": 1}
    worst = 0
    for name, replicas in scale.items():
        env = services[name]["environment"]
        per_process = int(env["SVDIFF_DB_POOL_SIZE"]) + int(env["SVDIFF_DB_MAX_OVERFLOW"])
        worst += replicas * concurrency(services[name]) * per_process
    command = services["postgres"]["command"]
    max_connections = int(next(arg for arg in command if arg.startswith("max_connections=")).split("=", 1)[1])
    assert worst <= max_connections - 3, (worst, max_connections)


def test_the_proxy_config_passes_nginx() -> None:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install -y nginx-light)")
    with tempfile.TemporaryDirectory() as prefix:
        result = subprocess.run(
            [binary, "-t", "-p", prefix, "-e", "stderr", "-c", str(ROOT / "docker" / "nginx.conf"),
             "-g", f"pid {prefix}/nginx.pid;"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
