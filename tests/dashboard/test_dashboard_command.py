"""``milepost dashboard``: its flags, its refusals, and the Streamlit command it hands over to."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from dashboard import command
from milepost.cli import main
from tests.support import MILEPOST, REPO


def milepost(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
    return subprocess.run(
        [*MILEPOST, *args], check=False, capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )


@pytest.fixture
def handed_over(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``os.execvpe`` would have started, instead of starting it."""
    seen: dict[str, Any] = {}

    def execvpe(file: str, args: list[str], env: dict[str, str]) -> None:
        seen.update(file=file, args=args, env=env)

    monkeypatch.setattr(command.os, "execvpe", execvpe)
    monkeypatch.delenv("MILEPOST_API_TOKEN", raising=False)
    return seen


def test_help_names_every_flag_and_the_deep_links() -> None:
    result = milepost("dashboard", "--help")
    assert result.returncode == 0, result.stderr
    for word in (
        "--api",
        "--port",
        "--host",
        "--token",
        "MILEPOST_API_TOKEN",
        "/?order=KEY",
        "/?promotion=ID",
    ):
        assert word in result.stdout, word


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--api", "node:4318"], ["'--api'", "'node:4318'", "http(s) URL"]),
        (["--port", "70000"], ["'--port'", "'70000'"]),
        (["--port", "eighty"], ["--port", "eighty"]),
    ],
)
def test_bad_flags_are_one_sentence_and_exit_2(flags: list[str], words: list[str]) -> None:
    result = milepost("dashboard", *flags)
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("milepost: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in line, line


def test_it_runs_the_packaged_app_headless_with_the_api_in_the_environment(
    handed_over: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard", "--api", "http://node:4318/", "--port", "8600", "--token", "s3cret"]) == 0
    args = handed_over["args"]
    assert handed_over["file"] == sys.executable
    assert args[1:5] == ["-m", "streamlit", "run", str(REPO / "dashboard" / "app.py")]
    options = dict(zip(args[5::2], args[6::2], strict=True))
    assert options["--server.port"] == "8600" and options["--server.address"] == "127.0.0.1"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    assert handed_over["env"]["MILEPOST_API_URL"] == "http://node:4318"
    assert handed_over["env"]["MILEPOST_API_TOKEN"] == "s3cret"
    assert "s3cret" not in " ".join(args)
    printed = capsys.readouterr().err
    assert "dashboard on http://127.0.0.1:8600 reading http://node:4318" in printed
    assert "s3cret" not in printed


def test_the_token_may_come_from_the_environment(
    handed_over: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILEPOST_API_TOKEN", "from-env")
    assert main(["dashboard"]) == 0
    assert handed_over["env"]["MILEPOST_API_TOKEN"] == "from-env"
    assert handed_over["env"]["MILEPOST_API_URL"] == "http://127.0.0.1:4318"
    assert "8501" in handed_over["args"]
