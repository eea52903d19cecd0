"""The schema on a fresh embedded store: migrations, table layout, retention, time zones, temp files.

chDB holds one data path per process at a time, so this module opens exactly one store
and closes it at the end, before another module may open its own.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.client import Client

from milepost.config import StorageConfig
from storage.client import StorageUnavailable, embedded_path, is_embedded, open_client, prepare_temp_dir
from storage.schema import MIGRATIONS, migrate, schema_version
from storage.tables import EVENT_SCHEMA, SPAN_SCHEMA
from tests.support import free_port, table_of

TABLES = ("spans", "trace_index", "events", "quarantine")
LEFTOVERS = ("tmp3f9a1c.native", "tmpb07e22.raw")


@dataclass
class Store:
    client: Client
    data_dir: Path
    first_migration: list[str]
    first_version: int
    leftovers_before_open: list[str]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    data_dir = tmp_path_factory.mktemp("schema") / "data"
    # What a kill -9 during inserts leaves in the node's temp folder.
    (data_dir / "tmp" / "nested").mkdir(parents=True)
    for name in LEFTOVERS:
        (data_dir / "tmp" / name).write_bytes(b"\0" * 64)
    leftovers = sorted(p.name for p in (data_dir / "tmp").iterdir())
    with pytest.MonkeyPatch.context() as patch:
        # open_client points TMPDIR at the store's folder; give the rest of the session its own back.
        patch.delenv("TMPDIR", raising=False)
        patch.setattr(tempfile, "tempdir", tempfile.tempdir)
        client = open_client("", data_dir)
        try:
            lines: list[str] = []
            version = migrate(client, StorageConfig(), lines.append)
            yield Store(client, data_dir, lines, version, leftovers)
        finally:
            client.close()


def table(store: Store, name: str) -> dict[str, Any]:
    rows = store.client.query(
        "SELECT engine, partition_key, sorting_key, engine_full FROM system.tables"
        " WHERE database = currentDatabase() AND name = {name:String}",
        parameters={"name": name},
    ).result_rows
    assert rows, f"table {name} does not exist"
    engine, partition_key, sorting_key, engine_full = rows[0]
    return {
        "engine": engine,
        "partition_key": partition_key,
        "sorting_key": sorting_key,
        "engine_full": engine_full,
    }


def columns(store: Store, name: str) -> dict[str, str]:
    rows = store.client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {name:String}",
        parameters={"name": name},
    ).result_rows
    return {column: kind for column, kind in rows}


def ttl_days(store: Store) -> dict[str, str]:
    return {
        name: table(store, name)["engine_full"].split(" TTL ")[1].split(" SETTINGS ")[0] for name in TABLES
    }


# -- migrations ------------------------------------------------------------------------------------


def test_a_fresh_store_migrates_to_the_latest_version(store: Store) -> None:
    latest = MIGRATIONS[-1].version
    assert [m.version for m in MIGRATIONS] == list(range(1, latest + 1))
    assert store.first_version == latest
    assert store.first_migration == [
        f"migration {m.version} ({number}/{len(MIGRATIONS)}): {m.description}"
        for number, m in enumerate(MIGRATIONS, start=1)
    ]
    assert store.first_migration[0] == f"migration 1 (1/{len(MIGRATIONS)}): {MIGRATIONS[0].description}"
    assert schema_version(store.client) == latest
    assert embedded_path("", store.data_dir).is_dir()


def test_migrating_again_changes_nothing(store: Store) -> None:
    lines: list[str] = []

    assert migrate(store.client, StorageConfig(), lines.append) == MIGRATIONS[-1].version

    assert lines == []
    ledger = store.client.query(
        "SELECT version, description FROM schema_migrations ORDER BY version"
    ).result_rows
    assert ledger == [(m.version, m.description) for m in MIGRATIONS]


def test_every_table_exists_with_its_engine_partitions_and_order(store: Store) -> None:
    assert table(store, "spans")["engine"] == "ReplacingMergeTree"
    assert table(store, "spans")["partition_key"] == "toDate(timestamp)"
    assert (
        table(store, "spans")["sorting_key"]
        == "service_name, span_name, toDateTime(timestamp), trace_id, span_id"
    )
    assert table(store, "trace_index")["engine"] == "MergeTree"
    assert table(store, "trace_index")["partition_key"] == "toDate(start)"
    assert table(store, "trace_index")["sorting_key"] == "trace_id, toUnixTimestamp(start)"
    assert table(store, "events")["engine"] == "ReplacingMergeTree"
    assert table(store, "events")["sorting_key"] == "source, id"
    assert table(store, "quarantine")["engine"] == "MergeTree"
    assert table(store, "quarantine")["partition_key"] == "toYYYYMM(received_at)"
    assert table(store, "quarantine")["sorting_key"] == "signal, received_at"
    assert table(store, "trace_index_mv")["engine"] == "MaterializedView"


def test_default_retention_is_applied_as_ttl(store: Store) -> None:
    assert ttl_days(store) == {
        "spans": "toDateTime(timestamp) + toIntervalDay(30)",
        "trace_index": "toDateTime(start) + toIntervalDay(30)",
        "events": "toDateTime(received_at) + toIntervalDay(400)",
        "quarantine": "toDateTime(received_at) + toIntervalDay(90)",
    }
    assert "ttl_only_drop_parts = 1" in table(store, "spans")["engine_full"]


def test_trace_ids_have_a_bloom_filter(store: Store) -> None:
    rows = store.client.query(
        "SELECT table, type, type_full, expr FROM system.data_skipping_indices"
        " WHERE database = currentDatabase() AND name = 'idx_trace_id' ORDER BY table"
    ).result_rows
    assert rows == [
        ("spans", "bloom_filter", "bloom_filter(0.001)", "trace_id"),
        ("trace_index", "bloom_filter", "bloom_filter(0.01)", "trace_id"),
    ]
    spans_indices = store.client.query(
        "SELECT expr FROM system.data_skipping_indices"
        " WHERE database = currentDatabase() AND table = 'spans' AND type = 'bloom_filter'"
    ).result_rows
    assert {expr for (expr,) in spans_indices} >= {"order_id", "sku", "mapKeys(span_attributes)"}


def test_span_columns_follow_the_otel_exporter_layout(store: Store) -> None:
    spans = columns(store, "spans")
    assert spans["timestamp"] == "DateTime64(9, 'UTC')"
    assert spans["span_name"] == "LowCardinality(String)"
    assert spans["service_name"] == "LowCardinality(String)"
    assert spans["span_attributes"] == "Map(LowCardinality(String), String)"
    assert spans["resource_attributes"] == "Map(LowCardinality(String), String)"
    assert spans["events_attributes"] == "Array(Map(LowCardinality(String), String))"
    for key in ("order_id", "sku", "store_id", "promotion_id", "milestone", "alias_kind", "alias_value"):
        assert key in spans
    events = columns(store, "events")
    assert events["extensions"] == "Map(LowCardinality(String), String)"
    assert events["time"] == "DateTime64(6, 'UTC')"
    assert events["time_missing"] == "Bool"


def test_changing_retention_alters_the_ttl_once(store: Store) -> None:
    shorter = StorageConfig(spans_ttl_days=7, events_ttl_days=30, quarantine_ttl_days=90)
    try:
        lines: list[str] = []
        assert migrate(store.client, shorter, lines.append) == MIGRATIONS[-1].version
        assert sorted(lines) == [
            "retention of events set to 30 days",
            "retention of spans set to 7 days",
            "retention of trace_index set to 7 days",
        ]
        ttl = ttl_days(store)
        assert ttl["spans"] == "toDateTime(timestamp) + toIntervalDay(7)"
        assert ttl["trace_index"] == "toDateTime(start) + toIntervalDay(7)"
        assert ttl["events"] == "toDateTime(received_at) + toIntervalDay(30)"
        assert ttl["quarantine"] == "toDateTime(received_at) + toIntervalDay(90)"

        again: list[str] = []
        migrate(store.client, shorter, again.append)
        assert again == []
        # 3 days must not pass for 30 by a prefix match on the old definition.
        three: list[str] = []
        migrate(store.client, StorageConfig(spans_ttl_days=3, events_ttl_days=30), three.append)
        assert sorted(three) == ["retention of spans set to 3 days", "retention of trace_index set to 3 days"]
    finally:
        migrate(store.client, StorageConfig())
    assert ttl_days(store)["spans"] == "toDateTime(timestamp) + toIntervalDay(30)"


# -- reading back ----------------------------------------------------------------------------------


def test_timestamps_come_back_timezone_aware(store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=123456)
    store.client.insert(
        "spans",
        [[now, "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "POST /checkout", "web-shop", now]],
        column_names=["timestamp", "trace_id", "span_id", "span_name", "service_name", "received_at"],
    )
    store.client.insert(
        "events",
        [["pos/042", "evt-1", "com.acme.pos.sale", now, now, "{}"]],
        column_names=["source", "id", "type", "time", "received_at", "data"],
    )

    (span_time,) = store.client.query(
        "SELECT timestamp FROM spans WHERE trace_id = {t:String}",
        parameters={"t": "5b8efff798038103d269b633813fc60c"},
    ).result_rows[0]
    event_time, received_at = store.client.query(
        "SELECT time, received_at FROM events WHERE id = 'evt-1'"
    ).result_rows[0]

    for value in (span_time, event_time, received_at):
        assert value.tzinfo is not None
        assert value.utcoffset().total_seconds() == 0
        assert value == now
    # The materialized view keeps a trace's time range for bounded trace lookups.
    start, end = store.client.query(
        "SELECT min(start), max(end) FROM trace_index WHERE trace_id = {t:String}",
        parameters={"t": "5b8efff798038103d269b633813fc60c"},
    ).result_rows[0]
    assert start == end == now
    assert start.tzinfo is not None


# -- opening the store -----------------------------------------------------------------------------


def test_opening_the_store_swept_the_temp_files_a_crash_left(store: Store) -> None:
    assert store.leftovers_before_open == sorted([*LEFTOVERS, "nested"])
    tmp = store.data_dir / "tmp"
    assert tmp.is_dir()
    assert not any(name in os.listdir(tmp) for name in [*LEFTOVERS, "nested"])


def test_prepare_temp_dir_empties_a_leftover_folder_and_points_tempfiles_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)
    leftover = tmp_path / "tmp"
    (leftover / "deep" / "er").mkdir(parents=True)
    (leftover / "tmpabc.native").write_bytes(b"x" * 128)
    (leftover / "deep" / "er" / "tmpdef.raw").write_bytes(b"y")

    tmp = prepare_temp_dir(tmp_path)

    assert tmp == leftover
    assert tmp.is_dir() and list(tmp.iterdir()) == []
    assert os.environ["TMPDIR"] == str(tmp)
    assert tempfile.gettempdir() == str(tmp)
    with tempfile.NamedTemporaryFile() as handle:
        assert Path(handle.name).parent == tmp


def test_prepare_temp_dir_creates_a_missing_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)

    tmp = prepare_temp_dir(tmp_path / "fresh")

    assert tmp == tmp_path / "fresh" / "tmp"
    assert tmp.is_dir()


@pytest.mark.parametrize(
    ("url", "embedded", "path"),
    [
        ("", True, "DATA/clickhouse"),
        ("chdb://", True, "DATA/clickhouse"),
        ("chdb:///", True, "DATA/clickhouse"),
        ("chdb:///var/lib/milepost", True, "/var/lib/milepost"),
        ("http://default:pw@localhost:8123/milepost", False, None),
        ("https://clickhouse.internal:8443/milepost", False, None),
    ],
)
def test_which_urls_are_embedded_and_where_they_live(url: str, embedded: bool, path: str | None) -> None:
    data_dir = Path("/srv/milepost-data")
    assert is_embedded(url) is embedded
    if path is not None:
        assert embedded_path(url, data_dir) == Path(path.replace("DATA", str(data_dir)))


def test_an_unreachable_server_is_one_sentence_without_the_password(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(StorageUnavailable) as caught:
        open_client(f"http://milepost:pw-4d1e-secret@127.0.0.1:{port}/milepost", tmp_path)
    assert str(caught.value) == f"ClickHouse at 127.0.0.1:{port} is unreachable."


@pytest.mark.parametrize(
    ("name", "schema", "text"), [("spans", SPAN_SCHEMA, "status_message"), ("events", EVENT_SCHEMA, "data")]
)
def test_a_batch_of_raw_rows_is_written_as_one_compact_part(
    store: Store, name: str, schema: pa.Schema, text: str
) -> None:
    """A writer's batch is over ClickHouse's 10 MB default for Wide parts (a file per column stream,
    several times the memory to write); it must still go in as one Compact part."""
    # 12 MB uncompressed; the identity column of either table, the text in another.
    rows = [{"span_id": f"{n:016x}", "id": f"{n:016x}", text: f"{n:06d}" + "x" * 6000} for n in range(2000)]
    store.client.insert_arrow(name, table_of(schema, rows))
    parts = store.client.query(
        "SELECT part_type FROM system.parts WHERE active AND table = {name:String} "
        "AND data_uncompressed_bytes > 10 * 1024 * 1024",
        parameters={"name": name},
    ).result_rows
    assert parts == [("Compact",)]
