"""Configuration: defaults, YAML, ``MILEPOST_*`` overrides, one-sentence errors, secrets kept out of sight."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from milepost.config import (
    _SECTIONS,
    Config,
    ConfigError,
    Secret,
    StorageConfig,
    Token,
    load_config,
    mask_url,
    parse_config,
    parse_duration,
)

README = Path(__file__).resolve().parents[2] / "README.md"
PASSWORD = "pa55-w0rd-q7"
TOKEN = "tok-9f2c-very-secret"
SERVER_URL = f"https://milepost:{PASSWORD}@clickhouse.internal:8443/milepost"
APPRISE_URL = f"mailto://ops:{PASSWORD}@mail.example.com"


def write_yaml(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "milepost.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document), encoding="utf-8")
    return path


def config_error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return str(caught.value)


def assert_one_sentence(message: str, *names: str) -> None:
    """One line that starts with a capital, ends with a full stop and names every given key or value."""
    assert "\n" not in message, message
    assert message[0].isupper() and message.endswith("."), message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"


# -- defaults and loading --------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    config = load_config(None, environ={})

    assert config == Config() == parse_config({})
    assert config.storage.url == ""
    assert (config.storage.spans_ttl_days, config.storage.events_ttl_days) == (30, 400)
    assert config.storage.quarantine_ttl_days == 90
    assert (config.server.host, config.server.port, config.server.grpc_port) == ("127.0.0.1", 4318, 4317)
    assert config.server.max_body_bytes == 20971520
    assert config.server.max_inflight_requests == 256
    assert config.server.decode_workers == 0
    assert (config.wal.max_bytes, config.wal.segment_bytes) == (1024**3, 64 * 1024**2)
    assert (config.writer.batch_rows, config.writer.flush_interval) == (25_000, 0.5)
    assert config.tokens == ()
    assert config.privacy.hash_fields == ()
    assert config.contracts == ()
    assert config.sla is None
    assert (config.promotions, config.mapping, config.alerts) == ({}, {}, {})


def test_a_yaml_file_is_loaded_and_validated(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        {
            "storage": {"url": "chdb:///var/lib/milepost", "spans_ttl_days": 7},
            "server": {"host": "0.0.0.0", "port": 14318, "max_body_bytes": 1048576},
            "wal": {"segment_bytes": 1048576},
            "writer": {"batch_rows": 10_000, "flush_interval": "250ms"},
            "auth": {
                "tokens": [
                    {"name": "pos-fleet", "token_sha256": "AB" * 32, "scopes": ["ingest"]},
                    {"name": "store-042", "token": TOKEN, "scopes": ["read"], "stores": ["042", 43]},
                ]
            },
            "privacy": {"hash_fields": ["customer.email"], "hash_key": "pepper"},
            "sla": [{"from": "reserved", "to": "ready", "within": "2h", "when": {"fulfillment": "bopis"}}],
            "promotions": {"lag_threshold": "10m"},
            "mapping": {"events": [{"type": "com.acme.pos.sale", "milestone": "accepted"}]},
            "alerts": {"evaluation_interval": "15s"},
        },
    )

    config = load_config(path, environ={})

    assert config.storage.url == "chdb:///var/lib/milepost"
    assert config.storage.spans_ttl_days == 7
    assert config.storage.events_ttl_days == 400  # a key left out keeps its default
    assert (config.server.host, config.server.port, config.server.max_body_bytes) == (
        "0.0.0.0",
        14318,
        1048576,
    )
    assert config.wal.segment_bytes == 1048576
    assert config.writer.flush_interval == pytest.approx(0.25)
    pos, store = config.tokens
    assert pos == Token("pos-fleet", "ab" * 32, frozenset({"ingest"}))
    assert store.sha256 == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert store.stores == ("042", "43")
    assert config.privacy.hash_fields == ("customer.email",)
    assert config.privacy.hash_key == "pepper"
    assert config.sla is not None and config.sla[0]["within"] == "2h"
    assert config.promotions == {"lag_threshold": "10m"}
    assert config.alerts == {"evaluation_interval": "15s"}


@pytest.mark.parametrize("text", ["", "# nothing configured\n", "---\n"])
def test_an_empty_file_gives_the_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(write_yaml(tmp_path, text), environ={}) == Config()


def test_a_token_without_scopes_may_read() -> None:
    (token,) = parse_config({"auth": {"tokens": [{"token": TOKEN}]}}).tokens
    assert token.scopes == frozenset({"read"})
    assert token.name == "token-0"


# -- environment -----------------------------------------------------------------------------------


def test_environment_overrides_are_typed_and_win_over_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"server": {"port": 4000, "host": "127.0.0.1"}})
    environ = {
        "MILEPOST_SERVER_PORT": "5000",
        "MILEPOST_SERVER_MAX_BODY_BYTES": "2097152",
        "MILEPOST_WRITER_FLUSH_INTERVAL": "2s",
        "MILEPOST_STORAGE_SPANS_TTL_DAYS": "14",
        "MILEPOST_AUTH_TOKENS": "[{name: ci, token: abc, scopes: [ingest, read]}]",
        "MILEPOST_PRIVACY_HASH_FIELDS": "[customer.email, customer.phone]",
        "HOME": "/root",
        "MILEPOST": "ignored",
        "MILEPOST_NOSUCHSECTION_KEY": "ignored",
    }

    config = load_config(path, environ=environ)

    assert config.server.port == 5000
    assert config.server.host == "127.0.0.1"
    assert config.server.max_body_bytes == 2097152
    assert config.writer.flush_interval == 2.0
    assert config.storage.spans_ttl_days == 14
    assert [(t.name, t.scopes) for t in config.tokens] == [("ci", frozenset({"ingest", "read"}))]
    assert config.privacy.hash_fields == ("customer.email", "customer.phone")


@pytest.mark.parametrize(
    "url",
    [
        SERVER_URL,
        "http://default:p#ss: word@127.0.0.1:8123/db",  # YAML would cut at " #" or read ": " as a mapping
        "chdb:///var/lib/milepost",
    ],
)
def test_the_storage_url_from_the_environment_is_kept_verbatim(url: str) -> None:
    config = load_config(None, environ={"MILEPOST_STORAGE_URL": url})
    assert config.storage.url == url
    assert isinstance(config.storage.url, str)


def test_an_environment_override_of_an_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"MILEPOST_SERVER_PROT": "5000"})
    assert_one_sentence(str(caught.value), "'server.prot'")


def test_an_environment_override_of_an_invalid_value_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={"MILEPOST_SERVER_PORT": "lots"})
    assert_one_sentence(str(caught.value), "'server.port'", "'lots'")


# -- validation errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"storag": {}}, ["'storag'"]),
        ({"server": {"prot": 1}}, ["'server.prot'", "port"]),
        ({"server": {"port": 70000}}, ["'server.port'", "'70000'", "65535"]),
        ({"server": {"port": -1}}, ["'server.port'", "'-1'"]),
        ({"server": {"port": "http"}}, ["'server.port'", "'http'"]),
        ({"server": {"port": True}}, ["'server.port'", "'True'"]),
        ({"server": {"grpc_port": 65536}}, ["'server.grpc_port'", "'65536'"]),
        ({"server": {"max_body_bytes": 10}}, ["'server.max_body_bytes'", "'10'"]),
        ({"server": {"decode_workers": 65}}, ["'server.decode_workers'", "'65'"]),
        ({"storage": {"spans_ttl_days": 0}}, ["'storage.spans_ttl_days'", "'0'"]),
        ({"wal": {"segment_bytes": 1.5}}, ["'wal.segment_bytes'", "'1.5'"]),
        ({"writer": {"flush_interval": "soon"}}, ["'writer.flush_interval'", "'soon'"]),
        ({"writer": {"flush_interval": "5 minutes"}}, ["'writer.flush_interval'", "'5 minutes'"]),
        ({"storage": {"url": "postgres://db/x"}}, ["'storage.url'", "'postgres://db/x'"]),
        ({"server": ["port"]}, ["'server'"]),
        ({"sla": {"from": "reserved"}}, ["'sla'"]),
        ({"promotions": "10m"}, ["'promotions'"]),
        ({"events": {"contracts": "pos.json"}}, ["'events.contracts'", "'pos.json'"]),
        ({"privacy": {"hash_fields": "customer.email"}}, ["'privacy.hash_fields'", "'customer.email'"]),
        ({"auth": {"tokens": [{"name": "pos", "scopes": ["ingest"]}]}}, ["'auth.tokens[0]'", "pos", "token"]),
        (
            {"auth": {"tokens": [{"token": "a"}, {"name": "bo", "token": "b", "token_sha256": "c" * 64}]}},
            ["'auth.tokens[1]'", "bo", "token_sha256"],
        ),
        (
            {"auth": {"tokens": [{"name": "h", "token_sha256": "xyz"}]}},
            ["'auth.tokens[0].token_sha256'", "64"],
        ),
        ({"auth": {"tokens": [{"token_sha256": "a" * 63}]}}, ["'auth.tokens[0].token_sha256'"]),
        ({"auth": {"tokens": [{"token": "t", "scopes": ["write"]}]}}, ["'auth.tokens[0].scopes'", "'write'"]),
        ({"auth": {"tokens": [{"token": "t", "scopes": []}]}}, ["'auth.tokens[0].scopes'"]),
        ({"auth": {"tokens": [{"token": "t", "scopes": "read"}]}}, ["'auth.tokens[0].scopes'", "'read'"]),
        ({"auth": {"tokens": [{"token": "t", "stores": "042"}]}}, ["'auth.tokens[0].stores'", "'042'"]),
        ({"auth": {"tokens": [{"token": "t", "store": ["042"]}]}}, ["'auth.tokens[0].store'"]),
        ({"auth": {"tokens": ["t"]}}, ["'auth.tokens[0]'"]),
    ],
)
def test_every_validation_error_is_one_sentence_naming_the_key_and_value(
    raw: dict[str, Any], names: list[str]
) -> None:
    assert_one_sentence(config_error(raw), *names)


def test_an_unknown_section_or_key_lists_the_known_ones() -> None:
    message = config_error({"sever": {"port": 1}})
    assert all(section in message for section in _SECTIONS)
    message = config_error({"server": {"prot": 1}})
    assert "grpc_port, host, max_body_bytes" in message


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ("server: [unclosed\n", ["milepost.yaml", "YAML"]),
        ("- storage\n- server\n", ["milepost.yaml", "list"]),
        ("server:\n  port: 99999\n", ["'server.port'", "'99999'"]),
    ],
)
def test_a_bad_file_is_one_sentence(tmp_path: Path, document: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_yaml(tmp_path, document), environ={})
    assert_one_sentence(str(caught.value), *names)


def test_a_missing_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml", environ={})
    assert_one_sentence(str(caught.value), "absent.yaml", "cannot be read")


# -- secrets ---------------------------------------------------------------------------------------


def test_secret_reprs_never_show_the_value() -> None:
    secret = Secret(TOKEN)
    assert secret == TOKEN  # still usable as the string it holds
    assert TOKEN not in repr(secret)
    assert TOKEN not in repr([secret]) and TOKEN not in f"{secret!r}"

    storage = StorageConfig(url=SERVER_URL)
    assert PASSWORD not in repr(storage)
    assert "https://milepost:***@clickhouse.internal:8443/milepost" in repr(storage)

    (token,) = parse_config(
        {"auth": {"tokens": [{"name": "pos", "token": TOKEN, "scopes": ["ingest"]}]}}
    ).tokens
    assert TOKEN not in repr(token)
    assert token.sha256 not in repr(token)
    assert "pos" in repr(token) and "ingest" in repr(token)


def test_a_whole_config_repr_shows_no_secret() -> None:
    config = parse_config(
        {
            "storage": {"url": SERVER_URL},
            "auth": {"tokens": [{"name": "pos", "token": TOKEN}]},
            "privacy": {"hash_key": PASSWORD},
            "alerts": {"routes": [{"notify": [APPRISE_URL]}]},
        }
    )
    text = repr(config)
    assert PASSWORD not in text
    assert TOKEN not in text


@pytest.mark.parametrize(
    "raw",
    [
        {"storage": {"url": f"ftp://user:{PASSWORD}@host/db"}},
        {"storage": SERVER_URL},
        {"auth": {"tokens": {"name": "pos", "token": TOKEN}}},
        {"auth": [{"name": "pos", "token": TOKEN}]},
        {"auth": {"tokens": [{"name": "pos", "token": TOKEN, "token_sha256": "a" * 64}]}},
        {"auth": {"tokens": [{"name": "pos", "token": TOKEN, "scopes": ["write"]}]}},
        {"auth": {"tokens": [{"name": "pos", "token": TOKEN, "stores": "042"}]}},
        {"alerts": [{"notify": [APPRISE_URL]}]},
    ],
)
def test_error_messages_never_show_a_secret(raw: dict[str, Any]) -> None:
    message = config_error(raw)
    assert PASSWORD not in message
    assert TOKEN not in message
    assert_one_sentence(message)


def test_a_yaml_syntax_error_does_not_echo_the_line_with_the_secret(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, f'auth:\n  tokens:\n    - {{name: pos, token: "{TOKEN}, scopes: [ingest]}}\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert TOKEN not in message
    assert_one_sentence(message, "milepost.yaml", "line")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (SERVER_URL, "https://milepost:***@clickhouse.internal:8443/milepost"),
        ("http://default:8123@localhost:8123/db", "http://default:***@localhost:8123/db"),
        ("http://u:p@ss@host:8123/db", "http://u:***@host:8123/db"),
        ("http://u:@host:8123/db", "http://u:***@host:8123/db"),
        ("http://user@host:8123/db", "http://user@host:8123/db"),
        ("http://host:8123/db", "http://host:8123/db"),
        ("chdb:///var/lib/milepost", "chdb:///var/lib/milepost"),
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


# -- durations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("15s", 15.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("3d", 259200.0),
        ("1w", 604800.0),
        (" 10m ", 600.0),
        ("0s", 0.0),
        (30, 30.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration_units(value: Any, seconds: float) -> None:
    assert parse_duration("alerts.group_wait", value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "5 m", "5min", "-5s", "1y", "h", -1, True, None, [5]])
def test_parse_duration_refuses_anything_else(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration("alerts.group_wait", value)
    assert_one_sentence(str(caught.value), "'alerts.group_wait'", f"'{value}'")


# -- documentation ---------------------------------------------------------------------------------


def test_every_config_key_is_documented() -> None:
    readme = README.read_text(encoding="utf-8") if README.exists() else ""
    missing = []
    for section, keys in _SECTIONS.items():
        names = [section] if keys is None else [f"{section}.{key}" for key in sorted(keys)]
        missing += [name for name in names if not re.search(rf"\b{re.escape(name)}\b", readme)]
    assert missing == [], f"README.md does not document: {', '.join(missing)}"
