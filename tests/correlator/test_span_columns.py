"""The column-wise built-in span mapping gives exactly what the row-wise one gives."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pyarrow as pa
import pytest

from correlator.derived import Derived, span_tables, tables
from correlator.mapping import Mapper, parse_mapping
from storage.tables import SPAN_SCHEMA
from tests.support import table_of

NOW_US = 1_790_000_000_000_000
BUILTIN = Mapper()
KEYS = ("order_id", "sku", "alias_value", "promotion_id")
# Values a producer may send, the awkward ones included: padding and capitals in milestones, JSON's
# special characters, control characters and non-ASCII text in what the detail shows, nulls.
CHOICES: dict[str, list[Any]] = {
    "order_id": ["", "", "W-1", "W-2", "R-042-1", None],
    "milestone": ["", "paid", " Paid ", "RESERVED", "shipped", "\tready\n", "ready", None],
    "status_code": ["ok", "ok", "error", "unset", ""],
    "status_message": [
        "",
        "declined",
        'card "x" declined',
        "back\\slash",
        "line\nbreak",
        "ünï ✓",
        "\x01",
        None,
    ],
    "sku": ["", "884-12", 'sku"7', "ü-1", None],
    "location_id": ["", "DC-2", "tab\there"],
    "promotion_id": ["", "", "SPRING-10"],
    "store_id": ["", "042", "043", "\u00e9t\u00e9"],
    "channel": ["", "web", "store"],
    "alias_kind": ["", "", "pos_receipt", None],
    "alias_value": ["", "R-1", "W-1", "P-4821"],
    "span_name": ["pack", "charge card", 'GET "/x"'],
    "service_name": ["checkout", "", None],
}


def spans_table(rows: list[dict[str, Any]]) -> pa.Table:
    """``rows`` as stored spans; columns a row leaves out hold what the decoder writes for nothing."""
    return table_of(
        SPAN_SCHEMA,
        rows,
        trace_id="0" * 32,
        span_id="0" * 16,
        span_name="span",
        status_code="unset",
        timestamp=1_790_000_000 * 10**9,
    )


def row_wise(table: pa.Table) -> Derived:
    """The row-wise mapping of the spans worth mapping (those with a business key the mapping reads)."""
    rows = [row for row in table.to_pylist() if any(row[key] for key in KEYS)]
    return tables(BUILTIN.map_spans(rows), NOW_US)


def assert_same(got: Derived, expected: Derived) -> None:
    assert sorted(got) == sorted(expected)
    for name, table in expected.items():
        assert got[name].schema == table.schema, name
        assert got[name].to_pylist() == table.to_pylist(), name


def random_rows(seed: int, count: int, plain: bool = False) -> list[dict[str, Any]]:
    """``count`` spans drawn from ``CHOICES``; ``plain``: none with a character JSON escapes."""
    rng = random.Random(seed)
    choices = CHOICES
    if plain:
        choices = {
            name: [v for v in values if v is None or not re.search(r'[\x00-\x1f"\\]', v)]
            for name, values in CHOICES.items()
        }
    rows = []
    for index in range(count):
        row = {name: rng.choice(values) for name, values in choices.items()}
        row["trace_id"] = f"{rng.getrandbits(128):032x}"
        row["span_id"] = f"{index:016x}"
        row["timestamp"] = rng.randrange(1_600_000_000 * 10**9, 1_900_000_000 * 10**9)
        rows.append(row)
    return rows


@pytest.mark.parametrize(("seed", "plain"), [(seed, False) for seed in range(5)] + [(5, True)])
def test_random_spans_map_the_same_either_way(seed: int, plain: bool) -> None:
    table = spans_table(random_rows(seed, 400, plain))
    derived = span_tables(BUILTIN, table, NOW_US)
    assert_same(derived, row_wise(table))
    assert {"timeline", "order_links", "stores"} <= set(derived)  # the draw covers every table


def test_detail_with_characters_json_escapes_is_written_by_json() -> None:
    table = spans_table(
        [
            {"order_id": "W-1", "sku": 'a"b', "status_code": "error", "status_message": "x\\y\nz\x1f"},
            {"order_id": "W-1", "sku": "plain", "status_code": "error", "status_message": "ünï ✓"},
            {"order_id": "W-1", "status_code": "ok", "status_message": "not shown: not an error"},
        ]
    )
    details = span_tables(BUILTIN, table, NOW_US)["timeline"].column("detail").to_pylist()
    assert [json.loads(d) if d else {} for d in details] == [
        {"error": "x\\y\nz\x1f", "sku": 'a"b'},
        {"error": "ünï ✓", "sku": "plain"},
        {},
    ]
    assert details[1] == '{"error":"ünï ✓","sku":"plain"}'  # compact, sorted keys, not ASCII-escaped
    assert_same(span_tables(BUILTIN, table, NOW_US), row_wise(table))


def test_spans_without_keys_derive_nothing_and_a_bare_store_derives_no_store() -> None:
    table = spans_table([{"span_name": "GET /health", "store_id": "042"}, {"span_name": "noop"}])
    assert span_tables(BUILTIN, table, NOW_US) == {}
    assert row_wise(table) == {}
    assert span_tables(BUILTIN, spans_table([]), NOW_US) == {}


def test_user_span_rules_still_map_row_by_row() -> None:
    mapper = Mapper(
        parse_mapping(
            {"spans": [{"name": "pack box", "milestone": "ready", "order_id": "attributes.shop.order"}]}
        )
    )
    table = spans_table(
        [
            {"span_name": "pack box", "span_attributes": [("shop.order", "W-9")]},
            {"span_name": "charge", "order_id": "W-9", "milestone": "paid"},  # no rule: built in
        ]
    )
    timeline = span_tables(mapper, table, NOW_US)["timeline"].to_pylist()
    assert [(row["order_key"], row["kind"], row["name"]) for row in timeline] == [
        ("W-9", "milestone", "ready"),
        ("W-9", "milestone", "paid"),
    ]
