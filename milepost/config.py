"""Configuration: loaded and validated once at start, from YAML and ``MILEPOST_*`` variables.

Every key is optional. A bad key or value fails fast with one sentence naming both;
secrets (tokens, passwords, notification URLs) never appear in a repr or a message.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml


class ConfigError(ValueError):
    """The configuration (file, environment or flags) has a bad key or value."""


class Secret(str):
    """A string whose repr never shows its value."""

    def __repr__(self) -> str:
        return "Secret('***')"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(key: str, value: Any) -> float:
    """Seconds from ``15s``, ``5m``, ``2h``, ``3d``, ``500ms`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"Config '{key}' has value '{value}'. Not a duration such as 15s, 5m or 2h.")
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ConfigError(f"Config '{key}' has value '{value}'. Not a duration such as 15s, 5m or 2h.")
    return float(match.group(1)) * _UNITS[match.group(2)]


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class StorageConfig:
    """Where the data lives: ``chdb:///path`` (embedded, the default) or ``http(s)://user:pass@host:8123/db``."""

    url: str = ""
    spans_ttl_days: int = 30
    events_ttl_days: int = 400
    quarantine_ttl_days: int = 90

    def __repr__(self) -> str:
        return f"StorageConfig(url={mask_url(self.url)!r}, spans_ttl_days={self.spans_ttl_days})"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int = 4317
    max_body_bytes: int = 20 * 1024 * 1024
    max_inflight_requests: int = 256
    decode_workers: int = 0  # 0: one per core


@dataclass(frozen=True)
class WalConfig:
    """The write-ahead log: acknowledged data waits here until it is in storage."""

    max_bytes: int = 1024 * 1024 * 1024
    segment_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class WriterConfig:
    batch_rows: int = 25_000
    flush_interval: float = 0.5


@dataclass(frozen=True)
class Token:
    """A bearer token: its SHA-256 (the plain token is never kept), scopes and optional store limit."""

    name: str
    sha256: str
    scopes: frozenset[str]
    stores: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Token(name={self.name!r}, scopes={sorted(self.scopes)}, stores={list(self.stores)})"


@dataclass(frozen=True)
class PrivacyConfig:
    hash_fields: tuple[str, ...] = ()
    hash_key: str = field(default_factory=lambda: Secret("milepost"))


@dataclass(frozen=True)
class Config:
    storage: StorageConfig = field(default_factory=StorageConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    wal: WalConfig = field(default_factory=WalConfig)
    writer: WriterConfig = field(default_factory=WriterConfig)
    tokens: tuple[Token, ...] = ()
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    contracts: tuple[Mapping[str, Any], ...] = ()
    # Sections owned by the correlator and alerts, validated by them at start.
    sla: tuple[Mapping[str, Any], ...] | None = None
    promotions: Mapping[str, Any] = field(default_factory=dict)
    mapping: Mapping[str, Any] = field(default_factory=dict)
    alerts: Mapping[str, Any] = field(default_factory=dict, repr=False)  # apprise URLs carry credentials


SCOPES = frozenset({"ingest", "read", "admin"})
_SECTIONS = {
    "storage": {"url", "spans_ttl_days", "events_ttl_days", "quarantine_ttl_days"},
    "server": {"host", "port", "grpc_port", "max_body_bytes", "max_inflight_requests", "decode_workers"},
    "wal": {"max_bytes", "segment_bytes"},
    "writer": {"batch_rows", "flush_interval"},
    "auth": {"tokens"},
    "privacy": {"hash_fields", "hash_key"},
    "events": {"contracts"},
    "sla": None,
    "promotions": None,
    "mapping": None,
    "alerts": None,
}


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (optional), apply ``MILEPOST_SECTION_KEY`` overrides, validate everything."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Config file '{path}' cannot be read: {exc.strerror}.") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            # The parser's own message quotes the offending line, which may hold a token or password.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "it cannot be parsed"
            raise ConfigError(f"Config file '{path}' is not valid YAML{where}: {problem}.") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(
                f"Config file '{path}' must hold a mapping of sections, not {type(loaded).__name__}."
            )
        raw = dict(loaded or {})
    _apply_environment(raw, os.environ if environ is None else environ)
    return parse_config(raw)


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.startswith("MILEPOST_"):
            continue
        rest = name[len("MILEPOST_") :].lower()
        section, _, key = rest.partition("_")
        if section not in _SECTIONS or not key:
            continue
        if section == "storage" and key == "url":
            parsed: Any = value  # never YAML-parse a URL with a password in it
        else:
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = value
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"Config '{section}' must be a mapping to take {name}.")
        target[key] = parsed


def parse_config(raw: Mapping[str, Any]) -> Config:
    """Validate a mapping of sections into a ``Config``."""
    for section, value in raw.items():
        if section not in _SECTIONS:
            known = ", ".join(sorted(_SECTIONS))
            raise ConfigError(f"Config has unknown section '{section}'. Known sections: {known}.")
        keys = _SECTIONS[section]
        if keys is not None:
            if not isinstance(value, Mapping):
                # Not the value: a misplaced section may hold a password or token.
                raise ConfigError(f"Config '{section}' must be a mapping, not {type(value).__name__}.")
            for key in value:
                if key not in keys:
                    raise ConfigError(
                        f"Config '{section}.{key}' is not a known key. Known keys: {', '.join(sorted(keys))}."
                    )
    storage = _section(raw, "storage")
    server = _section(raw, "server")
    wal = _section(raw, "wal")
    writer = _section(raw, "writer")
    privacy = _section(raw, "privacy")
    url = str(storage.get("url", "") or "")
    if url and not url.startswith(("chdb://", "http://", "https://")):
        raise ConfigError(
            f"Config 'storage.url' has value '{mask_url(url)}'. Use chdb:///path or http(s)://host:8123/db."
        )
    sla = raw.get("sla")
    if sla is not None and not isinstance(sla, list):
        raise ConfigError(f"Config 'sla' has value '{sla}'. Must be a list of rules.")
    for section in ("promotions", "mapping", "alerts"):
        if section in raw and not isinstance(raw[section], Mapping):
            raise ConfigError(f"Config '{section}' must be a mapping, not {type(raw[section]).__name__}.")
    events = _section(raw, "events")
    contracts = events.get("contracts", [])
    if not isinstance(contracts, list):
        raise ConfigError(f"Config 'events.contracts' has value '{contracts}'. Must be a list.")
    return Config(
        storage=StorageConfig(
            url=Secret(url),
            # ClickHouse DateTime ends in 2106: a longer retention would wrap and expire everything.
            spans_ttl_days=_int(storage, "storage", "spans_ttl_days", 30, 1, 3650),
            events_ttl_days=_int(storage, "storage", "events_ttl_days", 400, 1, 3650),
            quarantine_ttl_days=_int(storage, "storage", "quarantine_ttl_days", 90, 1, 3650),
        ),
        server=ServerConfig(
            host=str(server.get("host", "127.0.0.1")),
            port=_int(server, "server", "port", 4318, 0, 65535),
            grpc_port=_int(server, "server", "grpc_port", 4317, 0, 65535),
            max_body_bytes=_int(server, "server", "max_body_bytes", 20 * 1024 * 1024, 1024),
            max_inflight_requests=_int(server, "server", "max_inflight_requests", 256, 1),
            decode_workers=_int(server, "server", "decode_workers", 0, 0, 64),
        ),
        wal=WalConfig(
            max_bytes=_int(wal, "wal", "max_bytes", 1024**3, 1024 * 1024),
            segment_bytes=_int(wal, "wal", "segment_bytes", 64 * 1024 * 1024, 64 * 1024),
        ),
        writer=WriterConfig(
            batch_rows=_int(writer, "writer", "batch_rows", 25_000, 1),
            flush_interval=parse_duration("writer.flush_interval", writer.get("flush_interval", 0.5)),
        ),
        tokens=_tokens(_section(raw, "auth").get("tokens", [])),
        privacy=PrivacyConfig(
            hash_fields=tuple(str(f) for f in _list(privacy, "privacy", "hash_fields")),
            hash_key=Secret(str(privacy.get("hash_key", "milepost"))),
        ),
        contracts=tuple(contracts),
        sla=tuple(sla) if sla is not None else None,
        promotions=dict(raw.get("promotions") or {}),
        mapping=dict(raw.get("mapping") or {}),
        alerts=dict(raw.get("alerts") or {}),
    )


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name) or {}
    return value if isinstance(value, Mapping) else {}


def _int(
    section: Mapping[str, Any], name: str, key: str, default: int, low: int, high: int | None = None
) -> int:
    value = section.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f" between {low} and {high}" if high is not None else f" of at least {low}"
        raise ConfigError(f"Config '{name}.{key}' has value '{value}'. Must be a whole number{bound}.")
    return value


def _list(section: Mapping[str, Any], name: str, key: str) -> list[Any]:
    value = section.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"Config '{name}.{key}' has value '{value}'. Must be a list.")
    return value


def _tokens(entries: Any) -> tuple[Token, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"Config 'auth.tokens' must be a list of tokens, not {type(entries).__name__}.")
    tokens = []
    for index, entry in enumerate(entries):
        where = f"auth.tokens[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"Config '{where}' must be a mapping with name, token or token_sha256, and scopes."
            )
        unknown = set(entry) - {"name", "token", "token_sha256", "scopes", "stores"}
        if unknown:
            raise ConfigError(f"Config '{where}.{sorted(unknown)[0]}' is not a known key.")
        name = str(entry.get("name") or f"token-{index}")
        if "token" in entry and "token_sha256" in entry:
            raise ConfigError(f"Config '{where}' ({name}) has both token and token_sha256; keep one.")
        if entry.get("token"):
            digest = hashlib.sha256(str(entry["token"]).encode()).hexdigest()
        elif entry.get("token_sha256"):
            digest = str(entry["token_sha256"]).lower()
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ConfigError(f"Config '{where}.token_sha256' ({name}) is not 64 hex characters.")
        else:
            raise ConfigError(f"Config '{where}' ({name}) needs token or token_sha256.")
        scopes = entry.get("scopes", ["read"])
        if not isinstance(scopes, list) or not scopes:
            raise ConfigError(
                f"Config '{where}.scopes' has value '{scopes}'. Must be a list of ingest, read, admin."
            )
        for scope in scopes:
            if scope not in SCOPES:
                raise ConfigError(
                    f"Config '{where}.scopes' has value '{scope}'. Not one of admin, ingest, read."
                )
        stores = entry.get("stores", [])
        if not isinstance(stores, list):
            raise ConfigError(f"Config '{where}.stores' has value '{stores}'. Must be a list of store ids.")
        tokens.append(Token(name, digest, frozenset(scopes), tuple(str(s) for s in stores)))
    return tuple(tokens)
