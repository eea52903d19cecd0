"""The versioned schema: every table Milepost owns, created and upgraded by numbered migrations.

A migration is never edited once released; a change is a new migration. TTLs come
from the configuration and are re-applied at start when they change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from milepost.config import StorageConfig


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# The span table follows the OpenTelemetry ClickHouse exporter's otel_traces: day partitions,
# LowCardinality names, Map attributes, bloom filters on ids, codecs, TTL; plus the business
# keys Milepost looks orders and SKUs up by. ReplacingMergeTree keyed on the span's identity
# makes a re-sent span collapse; readers deduplicate with LIMIT 1 BY until parts merge.
_SPANS = """
CREATE TABLE IF NOT EXISTS spans (
    timestamp DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    parent_span_id String CODEC(ZSTD(1)),
    trace_state String CODEC(ZSTD(1)),
    span_name LowCardinality(String) CODEC(ZSTD(1)),
    span_kind LowCardinality(String) CODEC(ZSTD(1)),
    service_name LowCardinality(String) CODEC(ZSTD(1)),
    resource_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    scope_name String CODEC(ZSTD(1)),
    scope_version String CODEC(ZSTD(1)),
    span_attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    duration_ns UInt64 CODEC(ZSTD(1)),
    status_code LowCardinality(String) CODEC(ZSTD(1)),
    status_message String CODEC(ZSTD(1)),
    events_timestamp Array(DateTime64(9, 'UTC')) CODEC(ZSTD(1)),
    events_name Array(LowCardinality(String)) CODEC(ZSTD(1)),
    events_attributes Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    links_trace_id Array(String) CODEC(ZSTD(1)),
    links_span_id Array(String) CODEC(ZSTD(1)),
    links_trace_state Array(String) CODEC(ZSTD(1)),
    links_attributes Array(Map(LowCardinality(String), String)) CODEC(ZSTD(1)),
    order_id String CODEC(ZSTD(1)),
    milestone LowCardinality(String) CODEC(ZSTD(1)),
    sku String CODEC(ZSTD(1)),
    store_id LowCardinality(String) CODEC(ZSTD(1)),
    location_id LowCardinality(String) CODEC(ZSTD(1)),
    channel LowCardinality(String) CODEC(ZSTD(1)),
    promotion_id LowCardinality(String) CODEC(ZSTD(1)),
    alias_kind LowCardinality(String) CODEC(ZSTD(1)),
    alias_value String CODEC(ZSTD(1)),
    received_at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_order_id order_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_sku sku TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(resource_attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(span_attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration duration_ns TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service_name, span_name, toDateTime(timestamp), trace_id, span_id)
TTL toDateTime(timestamp) + INTERVAL {spans_ttl_days} DAY
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000
"""

# Trace id -> time range, so a trace lookup reads spans inside a time bound (as the
# exporter's otel_traces_trace_id_ts does) instead of scanning every partition.
_TRACE_INDEX = """
CREATE TABLE IF NOT EXISTS trace_index (
    trace_id String CODEC(ZSTD(1)),
    start DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    end DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(start)
ORDER BY (trace_id, toUnixTimestamp(start))
TTL toDateTime(start) + INTERVAL {spans_ttl_days} DAY
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000
"""

_TRACE_INDEX_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS trace_index_mv TO trace_index AS
SELECT trace_id, min(timestamp) AS start, max(timestamp) AS end
FROM spans
GROUP BY trace_id
"""

# Integration events, keyed by their idempotency key (source, id): the writer skips keys
# already stored, and the engine collapses any repeat that slips past it.
_EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    source LowCardinality(String) CODEC(ZSTD(1)),
    id String CODEC(ZSTD(1)),
    type LowCardinality(String) CODEC(ZSTD(1)),
    spec_version LowCardinality(String) CODEC(ZSTD(1)),
    time DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    time_missing Bool,
    received_at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    subject String CODEC(ZSTD(1)),
    data_schema LowCardinality(String) CODEC(ZSTD(1)),
    data_content_type LowCardinality(String) CODEC(ZSTD(1)),
    data String CODEC(ZSTD(3)),
    extensions Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    contract LowCardinality(String) CODEC(ZSTD(1)),
    signal LowCardinality(String) CODEC(ZSTD(1)),
    order_id String CODEC(ZSTD(1)),
    milestone LowCardinality(String) CODEC(ZSTD(1)),
    sku String CODEC(ZSTD(1)),
    store_id LowCardinality(String) CODEC(ZSTD(1)),
    location_id LowCardinality(String) CODEC(ZSTD(1)),
    channel LowCardinality(String) CODEC(ZSTD(1)),
    promotion_id LowCardinality(String) CODEC(ZSTD(1)),
    alias_kind LowCardinality(String) CODEC(ZSTD(1)),
    alias_value String CODEC(ZSTD(1)),
    INDEX idx_order_id order_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_sku sku TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_time time TYPE minmax GRANULARITY 1
) ENGINE = ReplacingMergeTree
ORDER BY (source, id)
TTL toDateTime(received_at) + INTERVAL {events_ttl_days} DAY
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000
"""

_QUARANTINE = """
CREATE TABLE IF NOT EXISTS quarantine (
    received_at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    signal LowCardinality(String),
    source String CODEC(ZSTD(1)),
    id String CODEC(ZSTD(1)),
    type LowCardinality(String),
    position UInt32,
    field String CODEC(ZSTD(1)),
    value String CODEC(ZSTD(1)),
    reason String CODEC(ZSTD(1)),
    payload String CODEC(ZSTD(3))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (signal, received_at)
TTL toDateTime(received_at) + INTERVAL {quarantine_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = 1000
"""

# Quarantined events that a later reprocess accepted; listing quarantine leaves them out.
_QUARANTINE_RESOLVED = """
CREATE TABLE IF NOT EXISTS quarantine_resolved (
    signal LowCardinality(String),
    source String,
    id String,
    resolved_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (signal, source, id)
"""

# -- correlator tables -------------------------------------------------------------------------
# Every row is stored under the id its producer used; identity (which ids are one order) is
# resolved from order_links, so a late alias never requires rewriting a timeline row. Each
# table is keyed by the row's identity (ReplacingMergeTree), so a replayed batch collapses.

_TIMELINE = """
CREATE TABLE IF NOT EXISTS timeline (
    order_key String CODEC(ZSTD(1)),
    kind LowCardinality(String),
    name LowCardinality(String),
    time DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    source LowCardinality(String),
    event_key String CODEC(ZSTD(1)),
    event_type LowCardinality(String),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    store_id LowCardinality(String),
    channel LowCardinality(String),
    fulfillment LowCardinality(String),
    status LowCardinality(String),
    detail String CODEC(ZSTD(3))
) ENGINE = ReplacingMergeTree
ORDER BY (order_key, event_key, kind, name)
SETTINGS non_replicated_deduplication_window = 1000
"""

_ORDER_LINKS = """
CREATE TABLE IF NOT EXISTS order_links (
    alias String,
    order_key String,
    kind LowCardinality(String),
    time DateTime64(6, 'UTC'),
    event_key String
) ENGINE = ReplacingMergeTree
ORDER BY (alias, order_key)
SETTINGS non_replicated_deduplication_window = 1000
"""

_ORDER_LINKS_REVERSE = """
CREATE TABLE IF NOT EXISTS order_links_reverse (
    order_key String,
    alias String,
    kind LowCardinality(String),
    time DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (order_key, alias)
"""

_ORDER_LINKS_REVERSE_MV = """
CREATE MATERIALIZED VIEW IF NOT EXISTS order_links_reverse_mv TO order_links_reverse AS
SELECT order_key, alias, kind, time FROM order_links
"""

# Which canonical order each key belongs to now; a newer version wins.
_KEY_OWNER = """
CREATE TABLE IF NOT EXISTS key_owner (
    key String,
    canonical String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY key
"""

_MILESTONE_COLUMNS = ",\n".join(
    f"    first_{m} Nullable(DateTime64(6, 'UTC')),\n    last_{m} Nullable(DateTime64(6, 'UTC'))"
    for m in (
        "accepted",
        "paid",
        "reserved",
        "ready",
        "fulfilled",
        "returned",
        "refunded",
        "reconciled",
        "cancelled",
    )
)

# One row per canonical order, recomputed whenever one of its keys gets a new row; what
# lists, stalled queries, KPIs and alerts read, so none of them aggregates the timeline.
_ORDER_SUMMARY = f"""
CREATE TABLE IF NOT EXISTS order_summary (
    canonical String,
    members Array(String),
    channel LowCardinality(String),
    store_id LowCardinality(String),
    fulfillment LowCardinality(String),
{_MILESTONE_COLUMNS},
    first_seen DateTime64(6, 'UTC'),
    last_seen DateTime64(6, 'UTC'),
    payment_failures UInt32,
    postings UInt32,
    posting_failures UInt32,
    last_posting_failure Nullable(DateTime64(6, 'UTC')),
    last_posting Nullable(DateTime64(6, 'UTC')),
    identity_issues Array(String),
    version UInt64,
    is_deleted UInt8
) ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY canonical
"""

_SKU_EVENTS = """
CREATE TABLE IF NOT EXISTS sku_events (
    sku String,
    location_id LowCardinality(String),
    kind LowCardinality(String),
    time DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    event_key String,
    system LowCardinality(String),
    qty Int64,
    on_hand Nullable(Int64),
    delta Int64,
    order_key String,
    reason String
) ENGINE = ReplacingMergeTree
ORDER BY (sku, location_id, event_key, kind)
SETTINGS non_replicated_deduplication_window = 1000
"""

_PROMOTIONS = """
CREATE TABLE IF NOT EXISTS promotions (
    promo_id String,
    kind LowCardinality(String),
    target String,
    time DateTime64(6, 'UTC'),
    effective Nullable(DateTime64(6, 'UTC')),
    targets Array(String),
    skus Array(String),
    promo_kind LowCardinality(String),
    event_key String
) ENGINE = ReplacingMergeTree
ORDER BY (promo_id, kind, target, event_key)
"""

_STORES = """
CREATE TABLE IF NOT EXISTS stores (
    store_id String,
    first_seen DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY store_id
"""

# -- alerts tables -------------------------------------------------------------------------------
# Every state change of every alert instance (inactive/pending/firing/resolved), with the
# labels, annotations and business context it had then; the latest row per fingerprint is
# the instance's state, and what a restarted node resumes from.
_ALERT_HISTORY = """
CREATE TABLE IF NOT EXISTS alert_history (
    time DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    fingerprint String,
    rule LowCardinality(String),
    state LowCardinality(String),
    previous LowCardinality(String),
    labels Map(LowCardinality(String), String),
    annotations Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    context String CODEC(ZSTD(3)),
    active_at DateTime64(6, 'UTC'),
    fired_at Nullable(DateTime64(6, 'UTC')),
    resolved_at Nullable(DateTime64(6, 'UTC'))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (fingerprint, time, state)
TTL toDateTime(time) + INTERVAL {events_ttl_days} DAY
"""

# The notification log (Alertmanager's nflog): what each receiver was last told about each
# group, so neither a second evaluation nor a restart sends it again. One row per
# (receiver, group, content, kind); a repeat of the same content keeps the latest time.
_ALERT_NOTIFICATIONS = """
CREATE TABLE IF NOT EXISTS alert_notifications (
    receiver_key String,
    receiver String,
    group_key String,
    content_hash String,
    kind LowCardinality(String),
    firing Array(String),
    resolved Array(String),
    sent_at DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree(sent_at)
ORDER BY (receiver_key, group_key, content_hash, kind)
TTL toDateTime(sent_at) + INTERVAL 90 DAY
"""

# Every delivery attempt, failed ones included; receivers are stored masked (scheme://***).
_ALERT_ATTEMPTS = """
CREATE TABLE IF NOT EXISTS alert_attempts (
    time DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    receiver_key String,
    receiver String,
    group_key String,
    rule LowCardinality(String),
    kind LowCardinality(String),
    attempt UInt8,
    status LowCardinality(String),
    error String,
    fingerprints Array(String),
    title String CODEC(ZSTD(3))
) ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY time
TTL toDateTime(time) + INTERVAL 90 DAY
"""

_ALERT_SILENCES = """
CREATE TABLE IF NOT EXISTS alert_silences (
    id String,
    matchers Map(String, String),
    starts_at DateTime64(6, 'UTC'),
    ends_at DateTime64(6, 'UTC'),
    comment String,
    created_by String,
    created_at DateTime64(6, 'UTC'),
    deleted UInt8,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY id
"""

# Raw spans and events arrive in batches of ~15 MB (25,000 spans, uncompressed), over ClickHouse's
# 10 MB default, so each insert wrote a Wide part: a file and its buffers per column stream (~90
# for spans, with maps, arrays and skip indexes). Such an insert peaked at 231 MiB of memory, a
# Compact part (one file) at 66 MiB; merges still make Wide parts of what outgrows 64 MiB.
_COMPACT_BATCHES = tuple(
    f"ALTER TABLE {table} MODIFY SETTING min_bytes_for_wide_part = {64 * 2**20}"
    for table in ("spans", "events")
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "spans, trace index, integration events, quarantine",
        (_SPANS, _TRACE_INDEX, _TRACE_INDEX_MV, _EVENTS, _QUARANTINE),
    ),
    Migration(2, "quarantine reprocessing ledger", (_QUARANTINE_RESOLVED,)),
    Migration(
        3,
        "order timelines, aliases, order summaries, SKU events, promotions, stores",
        (
            _TIMELINE,
            _ORDER_LINKS,
            _ORDER_LINKS_REVERSE,
            _ORDER_LINKS_REVERSE_MV,
            _KEY_OWNER,
            _ORDER_SUMMARY,
            _SKU_EVENTS,
            _PROMOTIONS,
            _STORES,
        ),
    ),
    Migration(
        4,
        "alert history, notification log, delivery attempts, silences",
        (_ALERT_HISTORY, _ALERT_NOTIFICATIONS, _ALERT_ATTEMPTS, _ALERT_SILENCES),
    ),
    Migration(5, "raw spans and events written as compact parts (less memory per insert)", _COMPACT_BATCHES),
)

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    description String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = MergeTree ORDER BY version
"""

# Table -> the config attribute that holds its TTL in days.
_TTLS = {
    "spans": "spans_ttl_days",
    "trace_index": "spans_ttl_days",
    "events": "events_ttl_days",
    "quarantine": "quarantine_ttl_days",
}
_TTL_COLUMN = {
    "spans": "timestamp",
    "trace_index": "start",
    "events": "received_at",
    "quarantine": "received_at",
}


def schema_version(client: Client) -> int:
    client.command(_LEDGER)
    return int(client.query("SELECT max(version) FROM schema_migrations").result_rows[0][0] or 0)


def migrate(
    client: Client,
    storage: StorageConfig,
    progress: Callable[[str], None] = lambda _line: None,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> int:
    """Apply every migration newer than the store's version; return the version reached."""
    current = schema_version(client)
    ttl = {
        "spans_ttl_days": storage.spans_ttl_days,
        "events_ttl_days": storage.events_ttl_days,
        "quarantine_ttl_days": storage.quarantine_ttl_days,
    }
    pending = [m for m in migrations if m.version > current]
    for number, migration in enumerate(pending, start=1):
        progress(f"migration {migration.version} ({number}/{len(pending)}): {migration.description}")
        for statement in migration.statements:
            client.command(statement.format(**ttl))
        client.insert(
            "schema_migrations",
            [[migration.version, migration.description, datetime.now(UTC)]],
            column_names=["version", "description", "applied_at"],
        )
        current = migration.version
    _apply_ttls(client, storage, progress)
    return current


def _apply_ttls(client: Client, storage: StorageConfig, progress: Callable[[str], None]) -> None:
    rows = client.query(
        "SELECT name, engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        parameters={"names": list(_TTLS)},
    ).result_rows
    for name, engine_full in rows:
        days = int(getattr(storage, _TTLS[name]))
        if f"toIntervalDay({days})" in engine_full or f"INTERVAL {days} DAY" in engine_full:
            continue
        progress(f"retention of {name} set to {days} days")
        # Rewriting old parts now would stall the start; expired parts are dropped as they age.
        client.command(
            f"ALTER TABLE {name} MODIFY TTL toDateTime({_TTL_COLUMN[name]}) + INTERVAL {days} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
