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

from storage.memory import return_freed_memory

log = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """The store did not answer or refused a write; the caller keeps the data and retries.

    ``table`` names the table whose write failed, when the failure surfaces away from that write
    (an insert that ran beside the rest of its batch fails the batch when it settles)."""

    def __init__(self, message: str, table: str = "") -> None:
        super().__init__(message)
        self.table = table


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


# Linux nice value of the embedded engine's threads while they run the node's writes: acknowledging
# requests (HTTP, decoding, the log's fsync) comes first, and the write-ahead log holds what waits.
# ClickHouse applies it only with CAP_SYS_NICE (root, or the capability granted); else it is a no-op.
BACKGROUND_NICE = 10


def with_background_priority(client: Client, url: str) -> Client:
    """``client``, whose queries the embedded engine runs at ``BACKGROUND_NICE``; a server's clients
    are left to the server's own settings."""
    if is_embedded(url):
        client.set_client_setting("os_threads_nice_value_query", BACKGROUND_NICE)
    return client


def open_client(url: str, data_dir: Path) -> Client:
    """A clickhouse-connect client for ``url`` with timezone-aware timestamps.

    For a server URL naming a database that does not exist yet, the database is created.
    """
    if is_embedded(url):
        path = embedded_path(url, data_dir)
        path.mkdir(parents=True, exist_ok=True)
        prepare_temp_dir(data_dir)
        return_freed_memory()
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
