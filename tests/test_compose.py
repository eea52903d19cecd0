"""The container deployment: docker-compose.yml as docker-compose reads it, Dockerfile, deploy/milepost.yaml.

No Docker engine is needed: `docker-compose config` validates and renders the file on its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
NODE_CONFIG = ROOT / "deploy" / "milepost.yaml"
MOUNTED_CONFIG = "/etc/milepost/milepost.yaml"
LOCAL_DEFAULT = "changeme-local-only"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|HASH_KEY", re.IGNORECASE)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file as docker-compose renders it with every variable at its default."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed: `make test` installs it "
            "(apt-get install -y --no-install-recommends docker-compose)."
        )
    # No .env file and no variables from the caller's shell: the documented defaults only.
    env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    env_file.write_text("")
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "MILEPOST_", "COMPOSE_"))
    }
    result = subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"docker-compose rejects {COMPOSE_FILE.name}: {result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="module")
def services(rendered: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = rendered["services"]
    return services


def _container_ports(service: dict[str, Any]) -> set[int]:
    """Container ports of a service, from the short (1.29) or long (compose v2) rendering."""
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of each volume of a service."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = str(volume.get("source", ""))
        else:
            source, target = str(volume).split(":")[:2]
            mounts[target] = source
    return mounts


def _read_only_targets(service: dict[str, Any]) -> set[str]:
    targets = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("read_only"):
                targets.add(volume["target"])
        elif str(volume).endswith(":ro"):
            targets.add(str(volume).split(":")[1])
    return targets


def test_the_three_services_exist(services: dict[str, Any]) -> None:
    assert {"clickhouse", "milepost", "dashboard"} <= set(services)


def test_clickhouse_image_is_pinned_to_an_exact_version(services: dict[str, Any]) -> None:
    image = services["clickhouse"]["image"]
    name, _, tag = image.rpartition(":")
    assert name == "clickhouse/clickhouse-server", image
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", tag), f"{image} is not pinned to an exact version"


def test_clickhouse_has_credentials_from_the_environment_and_its_limits(services: dict[str, Any]) -> None:
    clickhouse = services["clickhouse"]
    environment = clickhouse["environment"]
    for key in ("CLICKHOUSE_DB", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"):
        assert environment.get(key), key
    assert str(environment["CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"]) == "1"
    nofile = clickhouse["ulimits"]["nofile"]
    assert int(nofile["soft"]) >= 262144 and int(nofile["hard"]) >= 262144


def test_milepost_serves_the_mounted_config_on_both_ports(services: dict[str, Any]) -> None:
    milepost = services["milepost"]
    command = milepost["command"]
    assert command[0] == "serve", command
    assert command[command.index("--config") + 1] == MOUNTED_CONFIG
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert MOUNTED_CONFIG in _read_only_targets(milepost)
    assert _mounts(milepost)[MOUNTED_CONFIG].endswith("deploy/milepost.yaml")
    assert {4318, 4317} <= _container_ports(milepost)
    assert milepost["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert milepost["restart"] == "unless-stopped"
    assert milepost["image"] == "milepost:local"


def test_the_schema_is_migrated_before_serve(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["command"][0] == "migrate"
    assert migrate["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert services["milepost"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # The migration must reach the same database with the same credentials as the node.
    storage_url = "MILEPOST_STORAGE_URL"
    assert migrate["environment"][storage_url] == services["milepost"]["environment"][storage_url]


def test_the_node_is_configured_with_tokens(services: dict[str, Any]) -> None:
    # Without tokens the node refuses to listen beyond loopback, so --host 0.0.0.0 needs them.
    tokens = yaml.safe_load(services["milepost"]["environment"]["MILEPOST_AUTH_TOKENS"])
    assert {scope for token in tokens for scope in token["scopes"]} >= {"ingest", "read"}


def test_dashboard_reads_the_node_over_http(services: dict[str, Any]) -> None:
    dashboard = services["dashboard"]
    command = dashboard["command"]
    assert command[0] == "dashboard"
    assert command[command.index("--api") + 1] == "http://milepost:4318"
    assert 8501 in _container_ports(dashboard)
    assert dashboard["image"] == services["milepost"]["image"]
    assert dashboard["depends_on"]["milepost"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    long_running = [name for name, service in services.items() if service.get("restart") != "no"]
    assert {"clickhouse", "milepost", "dashboard"} <= set(long_running)
    for name in long_running:
        assert services[name].get("healthcheck", {}).get("test"), f"service {name} has no healthcheck"
    assert "/readyz" in " ".join(services["milepost"]["healthcheck"]["test"])
    assert "/_stcore/health" in " ".join(services["dashboard"]["healthcheck"]["test"])


def test_data_lives_in_named_volumes(rendered: dict[str, Any], services: dict[str, Any]) -> None:
    named = set(rendered.get("volumes") or {})
    assert _mounts(services["clickhouse"])["/var/lib/clickhouse"] in named
    assert _mounts(services["milepost"])["/var/lib/milepost"] in named


def test_node_config_points_at_the_clickhouse_service() -> None:
    config = yaml.safe_load(NODE_CONFIG.read_text(encoding="utf-8"))
    url = urlsplit(config["storage"]["url"])
    assert url.scheme == "http"
    assert url.hostname == "clickhouse"
    assert config["server"]["host"] == "0.0.0.0"
    assert "tokens" in config["auth"]


def test_no_secret_is_written_in_the_files() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert "${" in str(value), (
                    f"{name}: {key} is written in the file, not taken from the environment"
                )
    # A variable's default may only be a documented local one.
    for variable, default in re.findall(r"\$\{(\w+):-([^}]*)\}", COMPOSE_FILE.read_text(encoding="utf-8")):
        if SECRET_NAME.search(variable):
            assert default.startswith(LOCAL_DEFAULT), f"{variable} defaults to an undocumented secret"
    storage_url = str(raw["x-milepost-environment"]["MILEPOST_STORAGE_URL"])
    assert "${CLICKHOUSE_PASSWORD" in storage_url

    node = yaml.safe_load(NODE_CONFIG.read_text(encoding="utf-8"))
    assert urlsplit(node["storage"]["url"]).password is None
    for token in node["auth"]["tokens"] or []:
        assert "token" not in token, "deploy/milepost.yaml holds a plain token; keep token_sha256 there"


def test_dockerfile_runs_milepost_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base, "the base image is not named in ARG PYTHON_IMAGE"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.group(1)), base.group(1)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["milepost"]' in dockerfile
    assert 'VOLUME ["/var/lib/milepost"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".venv", ".git"} <= set(ignored)
