"""The ``alerts`` config section: defaults, every key, and bad values failing at start with one sentence
naming the rule or route and the key, never showing a notification URL's secrets."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.config import (
    DEFAULT_INHIBIT,
    AlertConfigError,
    PromotionParams,
    SilenceParams,
    StalledParams,
    mask_secret_url,
    parse_alerts,
)
from milepost.config import ConfigError
from tests.support import MILEPOST, REPO, free_port

HOOK = "json://127.0.0.1:9/hook"


def test_no_section_gives_the_defaults() -> None:
    settings = parse_alerts({})
    assert (settings.evaluation_interval_s, settings.group_wait_s) == (15.0, 30.0)
    assert (settings.group_interval_s, settings.repeat_interval_s) == (300.0, 14400.0)
    assert settings.rules == () and settings.routes == ()
    assert settings.inhibit == DEFAULT_INHIBIT
    assert settings.dashboard_url == "http://127.0.0.1:8501"
    assert settings.alertmanager_url is None


def test_every_key_is_read() -> None:
    settings = parse_alerts(
        {
            "evaluation_interval": "30s",
            "group_wait": "1m",
            "group_interval": "10m",
            "repeat_interval": "12h",
            "resolve_timeout": "10m",
            "dashboard_url": "https://milepost.example/",
            "alertmanager_url": "http://am:9093",
            "retry": {"attempts": 5, "backoff": "2s"},
            "templates": {"title": "[$severity] $headline", "body": "$alerts"},
            "rules": [
                {
                    "name": "stalled-bopis",
                    "kind": "stalled_orders",
                    "for": "5m",
                    "keep_firing_for": "2m",
                    "severity": "critical",
                    "group_by": ["store_id", "team"],
                    "labels": {"team": "stores"},
                    "annotations": {"runbook": "https://wiki/stalls/$store_id"},
                    "min_orders": 3,
                    "max_age": "7d",
                },
                {"name": "promo", "kind": "promotion_lag", "completeness_below": 90, "after": "30m"},
                {
                    "name": "silent",
                    "kind": "ingest_silence",
                    "min_events": 5,
                    "window": "30m",
                    "silence": "5m",
                },
            ],
            "routes": [
                {"match": {"severity": "critical"}, "notify": [HOOK], "continue": True, "group_wait": "0s"},
                {"notify": HOOK},
            ],
            "inhibit": [],
        }
    )
    assert settings.evaluation_interval_s == 30.0 and settings.resolve_timeout_s == 600.0
    assert settings.dashboard_url == "https://milepost.example"
    assert (settings.retry_attempts, settings.retry_backoff_s) == (5, 2.0)
    assert settings.title_template == "[$severity] $headline"
    stalled, promo, silent = settings.rules
    assert (stalled.for_s, stalled.keep_firing_for_s, stalled.severity) == (300.0, 120.0, "critical")
    assert stalled.group_by == ("store_id", "team") and dict(stalled.labels) == {"team": "stores"}
    assert stalled.params == StalledParams(min_orders=3, max_age_s=7 * 86400.0)
    assert promo.params == PromotionParams(completeness_below=90.0, after_s=1800.0)
    assert promo.group_by == ("promo_id",)  # the kind's natural key by default
    assert silent.params == SilenceParams(min_events=5, window_s=1800.0, silence_s=300.0)
    first, default = settings.routes
    assert first.continue_ and first.group_wait_s == 0.0 and first.group_interval_s == 600.0
    assert default.match == {} and len(default.receivers) == 1
    assert settings.inhibit == ()


@pytest.mark.parametrize(
    ("alerts", "named", "value"),
    [
        ({"rules": [{"name": "x", "kind": "stalld"}]}, "'alerts.rules[0].kind' (rule 'x')", "'stalld'"),
        ({"rules": [{"kind": "stalled_orders"}]}, "'alerts.rules[0].name'", "'None'"),
        (
            {"rules": [{"name": "x", "kind": "stalled_orders", "for": "soon"}]},
            "rules[0].for' (rule 'x')",
            "'soon'",
        ),
        (
            {"rules": [{"name": "x", "kind": "promotion_lag", "lag_threshold": "-5m"}]},
            "rules[0].lag_threshold' (rule 'x')",
            "'-5m'",
        ),
        (
            {"rules": [{"name": "x", "kind": "stalled_orders", "sevrity": "high"}]},
            "rules[0].sevrity' (rule",
            "",
        ),
        (
            {"rules": [{"name": "x", "kind": "stalled_orders", "severity": "high"}]},
            "rules[0].severity'",
            "'high'",
        ),
        (
            {"rules": [{"name": "x", "kind": "stalled_orders", "group_by": ["sku"]}]},
            "rules[0].group_by'",
            "'sku'",
        ),
        (
            {"rules": [{"name": "x", "kind": "inventory_variance", "tolerance": -1}]},
            "rules[0].tolerance'",
            "'-1'",
        ),
        (
            {"rules": [{"name": "x", "kind": "stalled_orders", "tolerance": 1}]},
            "rules[0].tolerance' (rule",
            "",
        ),
        (
            {"rules": [{"name": "x", "kind": "stalled_orders", "labels": {"severity": "low"}}]},
            "labels.severity'",
            "",
        ),
        (
            {"rules": [{"name": "x", "kind": "promotion_lag", "completeness_below": 120}]},
            "completeness_below'",
            "",
        ),
        (
            {"rules": [{"name": "x", "kind": "failed_postings"}, {"name": "x", "kind": "failed_postings"}]},
            "'alerts.rules[1].name'",
            "'x'",
        ),
        ({"routes": [{"match": {"store_id": "042"}}]}, "'alerts.routes[0].notify'", ""),
        ({"routes": [{"notify": [HOOK], "group_wait": "later"}]}, "'alerts.routes[0].group_wait'", "'later'"),
        ({"inhibit": [{"target_match": {"severity": "info"}}]}, "'alerts.inhibit[0].source_match'", ""),
        ({"templates": {"title": "$status $whatever"}}, "'alerts.templates.title'", "'$whatever'"),
        ({"evaluation_interval": "0s"}, "'alerts.evaluation_interval'", ""),
        ({"group_by": ["store_id"]}, "'alerts.group_by' is not a known key", ""),
        ({"dashboard_url": "dash:8501"}, "'alerts.dashboard_url'", ""),
    ],
)
def test_bad_values_fail_with_one_sentence_naming_the_key(
    alerts: dict[str, Any], named: str, value: str
) -> None:
    with pytest.raises(AlertConfigError) as caught:
        parse_alerts(alerts)
    message = str(caught.value)
    assert named in message and value in message
    assert isinstance(caught.value, ConfigError)
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "foo://ops:hunter2@example.com/s3cr3t-path",
        "slack://hunter2s3cr3t",
        "mailto://ops:hunter2@",
        "hunter2s3cr3t",
    ],
)
def test_urls_apprise_cannot_use_fail_without_showing_them(url: str) -> None:
    with pytest.raises(AlertConfigError) as caught:
        parse_alerts(
            {"routes": [{"notify": [HOOK]}, {"match": {"severity": "critical"}, "notify": [HOOK, url]}]}
        )
    message = str(caught.value)
    assert "'alerts.routes[1].notify[1]'" in message
    assert "hunter2" not in message and "s3cr3t" not in message
    assert "Apprise cannot use this URL" in message or "must be an apprise URL" in message


def test_masking_keeps_only_the_scheme() -> None:
    assert mask_secret_url("slack://T000/B000/XYZ") == "slack://***"
    assert mask_secret_url("mailto://user:pass@example.com") == "mailto://***"
    assert mask_secret_url("no scheme here") == "***"
    settings = parse_alerts({"routes": [{"notify": ["json://user:hunter2@127.0.0.1:9/x"]}]})
    assert "hunter2" not in repr(settings)
    assert repr(settings.routes[0].receivers[0]).count("json://***") == 1


def serve(tmp_path: Path, alerts: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "milepost.yaml"
    config.write_text(yaml.safe_dump({"alerts": alerts}))
    args = [
        "serve",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(free_port()),
    ]
    return subprocess.run(
        [*MILEPOST, *args, "--grpc-port", "0"], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_serve_refuses_a_bad_rule_at_start(tmp_path: Path) -> None:
    result = serve(tmp_path, {"rules": [{"name": "late-promos", "kind": "promo_lag"}]})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "milepost: Config 'alerts.rules[0].kind' (rule 'late-promos') has value 'promo_lag'."
    )
    assert not (tmp_path / "data").exists()  # refused before touching storage


def test_serve_refuses_a_bad_apprise_url_without_printing_it(tmp_path: Path) -> None:
    secret = "xoxb-hunter2-s3cr3t"
    result = serve(tmp_path, {"routes": [{"notify": [f"slak://{secret}@workspace/ops"]}]})
    assert result.returncode == 2
    assert "Config 'alerts.routes[0].notify[0]' has value 'slak://***'" in result.stderr
    assert secret not in result.stderr + result.stdout
