"""The ``milepost`` command line, run as a user runs it: help, bad flags and config, ``migrate``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from storage.schema import MIGRATIONS
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
MILEPOST = [sys.executable, "-m", "milepost.cli"]


def milepost(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
    return subprocess.run(
        [*MILEPOST, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **(env or {})},
        timeout=timeout,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit code 2 and one line on stderr, naming every given key or value, with no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("milepost: ") and line.endswith("."), line
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in line, f"{name!r} not in {line!r}"
    return line


def write_config(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "milepost.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document), encoding="utf-8")
    return path


# -- help ------------------------------------------------------------------------------------------


def test_program_help_lists_the_commands() -> None:
    result = milepost("--help")
    assert result.returncode == 0, result.stderr
    for word in ("usage: milepost", "serve", "migrate", "--version", "--help"):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("serve", ["--config", "--data-dir", "--host", "--port", "--grpc-port", "--log-level"]),
        ("migrate", ["--config", "--data-dir"]),
    ],
)
def test_command_help_lists_its_flags(command: str, flags: list[str]) -> None:
    result = milepost(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: milepost {command}" in result.stdout
    for flag in flags:
        assert flag in result.stdout


def test_version() -> None:
    from milepost import __version__

    result = milepost("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"milepost {__version__}"


# -- bad flags -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["serve", "--bogus"], ["--bogus", "--help"]),
        (["migrate", "--verbose"], ["--verbose"]),
        (["--bogus"], ["COMMAND"]),
        ([], ["COMMAND"]),
        (["frobnicate"], ["'frobnicate'", "serve", "migrate"]),
        (["serve", "--port", "http"], ["--port", "'http'", "milepost serve --help"]),
        (["serve", "--log-level", "loud"], ["--log-level", "'loud'"]),
        (["migrate", "--data-dir"], ["--data-dir", "milepost migrate --help"]),
    ],
)
def test_a_bad_flag_exits_2_with_one_sentence(args: list[str], names: list[str]) -> None:
    line = assert_refused(milepost(*args), *names)
    assert "milepost milepost" not in line


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--port", "70000"), ("--port", "-1"), ("--grpc-port", "65536")],
)
def test_a_port_out_of_range_exits_2(tmp_path: Path, flag: str, value: str) -> None:
    data_dir = tmp_path / "data"
    assert_refused(milepost("serve", "--data-dir", str(data_dir), flag, value), f"'{flag}'", f"'{value}'")
    assert not data_dir.exists()


# -- bad configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ({"server": {"prot": 4318}}, ["'server.prot'", "not a known key"]),
        ({"server": {"port": 99999}}, ["'server.port'", "'99999'"]),
        ({"writer": {"flush_interval": "soon"}}, ["'writer.flush_interval'", "'soon'"]),
        ({"storage": {"url": "postgres://db/x"}}, ["'storage.url'", "'postgres://db/x'"]),
        ({"serverr": {}}, ["'serverr'"]),
        (
            {"auth": {"tokens": [{"name": "pos", "scopes": ["shop"], "token": "t"}]}},
            ["'auth.tokens[0].scopes'", "shop"],
        ),
        ("server: [unclosed\n", ["milepost.yaml", "not valid YAML"]),
        ("- just\n- a list\n", ["milepost.yaml", "mapping"]),
    ],
)
def test_a_bad_config_file_exits_2_naming_the_key_and_value(
    tmp_path: Path, document: object, names: list[str]
) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path, document)
    assert_refused(milepost("serve", "--config", str(config), "--data-dir", str(data_dir)), *names)
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ({"storage": {"spans_ttl_days": 0}}, ["'storage.spans_ttl_days'", "'0'"]),
        ({"storage": {"ttl": 7}}, ["'storage.ttl'"]),
    ],
)
def test_migrate_refuses_a_bad_config_before_opening_the_store(
    tmp_path: Path, document: object, names: list[str]
) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path, document)
    assert_refused(milepost("migrate", "--config", str(config), "--data-dir", str(data_dir)), *names)
    assert not data_dir.exists()


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    assert_refused(milepost("serve", "--config", str(tmp_path / "nope.yaml")), "nope.yaml")


def test_a_bad_environment_override_exits_2(tmp_path: Path) -> None:
    result = milepost("serve", "--data-dir", str(tmp_path / "data"), env={"MILEPOST_SERVER_PORT": "lots"})
    assert_refused(result, "'server.port'", "'lots'")


def test_a_secret_in_a_bad_config_is_not_printed(tmp_path: Path) -> None:
    password = "pw-7c1e-secret"
    config = write_config(tmp_path, {"storage": f"https://milepost:{password}@clickhouse:8443/db"})
    result = milepost("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert_refused(result, "'storage'")
    assert password not in result.stderr + result.stdout


# -- refusing to listen beyond loopback without a token --------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_beyond_loopback_without_a_token_exits_2_and_never_listens(tmp_path: Path, host: str) -> None:
    data_dir = tmp_path / "data"
    port = free_port()

    result = milepost(
        "serve", "--host", host, "--port", str(port), "--grpc-port", "0", "--data-dir", str(data_dir)
    )

    line = assert_refused(result, "'server.host'", f"'{host}'", "token")
    assert "listening" not in result.stderr + result.stdout
    assert not data_dir.exists(), "the node opened its store before refusing"
    assert "auth.tokens" in line or "127.0.0.1" in line


def test_the_host_from_the_config_file_is_checked_too(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"server": {"host": "0.0.0.0"}})
    result = milepost("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert_refused(result, "'server.host'", "'0.0.0.0'")


# -- migrate ---------------------------------------------------------------------------------------


def test_migrate_creates_the_schema_then_is_a_no_op(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    latest = MIGRATIONS[-1].version

    first = milepost("migrate", "--data-dir", str(data_dir))

    assert first.returncode == 0, first.stderr
    lines = first.stderr.strip().splitlines()
    assert lines[0] == f"milepost: migrating embedded store in {data_dir}"
    assert f"milepost: migration 1 (1/{len(MIGRATIONS)}): {MIGRATIONS[0].description}" in lines
    assert sum(line.startswith("milepost: migration ") for line in lines) == len(MIGRATIONS)
    assert lines[-1] == f"milepost: schema at version {latest}"
    assert (data_dir / "clickhouse").is_dir()

    second = milepost("migrate", "--data-dir", str(data_dir))

    assert second.returncode == 0, second.stderr
    lines = second.stderr.strip().splitlines()
    assert not any(line.startswith("milepost: migration ") for line in lines), lines
    assert lines[-1] == f"milepost: schema at version {latest}"

    config = write_config(tmp_path, {"storage": {"spans_ttl_days": 7}})
    third = milepost("migrate", "--config", str(config), "--data-dir", str(data_dir))

    assert third.returncode == 0, third.stderr
    assert "milepost: retention of spans set to 7 days" in third.stderr
    assert third.stderr.strip().splitlines()[-1] == f"milepost: schema at version {latest}"
