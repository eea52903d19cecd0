"""Opening the store: embedded chDB by default, a ClickHouse server over HTTP with the same code."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """The store did not answer or refused a write; the caller keeps the data and retries."""


def is_embedded(url: str) -> bool:
    return not url or url.startswith("chdb://")


def embedded_path(url: str, data_dir: Path) -> Path:
    """The chDB directory: the url's path, or ``<data-dir>/clickhouse``."""
    if url and url.startswith("chdb://"):
        path = url[len("chdb://") :]
        if path and path != "/":
            return Path(path)
    return data_dir / "clickhouse"


def prepare_temp_dir(data_dir: Path) -> Path:
    """Point temp files at a folder the node owns, emptied first.

    chDB writes every insert through a temp file and ``kill -9`` leaves them behind,
    so a folder of our own is swept at each start instead of filling ``/tmp``.
    """
    tmp = data_dir / "tmp"
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)
    return tmp


def open_client(url: str, data_dir: Path) -> Client:
    """A clickhouse-connect client for ``url`` with timezone-aware timestamps.

    For a server URL naming a database that does not exist yet, the database is created.
    """
    if is_embedded(url):
        path = embedded_path(url, data_dir)
        path.mkdir(parents=True, exist_ok=True)
        prepare_temp_dir(data_dir)
        return clickhouse_connect.get_client(dsn=f"chdb://{path.resolve()}", tz_mode="aware")
    parts = urlsplit(url)
    database = parts.path.strip("/") or "default"
    try:
        client = clickhouse_connect.get_client(dsn=url, tz_mode="aware")
    except Exception as exc:  # the server may know no such database yet
        if "UNKNOWN_DATABASE" not in str(exc) and "Code: 81" not in str(exc):
            raise StorageUnavailable(f"ClickHouse at {parts.hostname}:{parts.port} is unreachable.") from exc
        bootstrap = clickhouse_connect.get_client(dsn=urlunsplit(parts._replace(path="/default")))
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        bootstrap.close()
        client = clickhouse_connect.get_client(dsn=url, tz_mode="aware")
    return client
