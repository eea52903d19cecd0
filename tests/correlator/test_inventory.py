"""Inventory: each system's on_hand per SKU and location, the spread between systems, and SKU totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.inventory import sku_totals, unique, variance
from correlator.model import SkuEntry

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = (datetime(2026, 11, 27, 8, 0, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MIN = 60_000_000


def at(minutes: int) -> int:
    return T0 + minutes * MIN


def snapshot(
    system: str, on_hand: int, minutes: int, location: str = "042", key: str | None = None
) -> SkuEntry:
    return SkuEntry(
        "884-12",
        location,
        "snapshot",
        at(minutes),
        key or f"s-{system}-{minutes}",
        system=system,
        on_hand=on_hand,
    )


def adjust(system: str, delta: int, minutes: int, location: str = "042", key: str | None = None) -> SkuEntry:
    return SkuEntry(
        "884-12",
        location,
        "adjustment",
        at(minutes),
        key or f"a-{system}-{minutes}",
        system=system,
        delta=delta,
    )


def test_each_system_is_its_latest_snapshot_plus_later_adjustments() -> None:
    entries = [
        snapshot("erp", 10, 0),
        adjust("erp", -3, 5),  # before the latest snapshot: already counted in it
        snapshot("erp", 7, 10),
        adjust("erp", -1, 10),  # at the snapshot's time: counted in it too
        adjust("erp", -2, 20),
        adjust("erp", 4, 30),
        snapshot("pos", 9, 25),
        adjust("wms", 1, 40),  # wms never sent a snapshot
    ]
    (location,) = variance(entries)
    assert location == {
        "sku": "884-12",
        "location_id": "042",
        "systems": {
            "erp": {
                "on_hand": 9,
                "as_of": "2026-11-27T08:30:00Z",
                "snapshot_at": "2026-11-27T08:10:00Z",
                "pending_delta": 2,
            },
            "pos": {
                "on_hand": 9,
                "as_of": "2026-11-27T08:25:00Z",
                "snapshot_at": "2026-11-27T08:25:00Z",
                "pending_delta": 0,
            },
            "wms": {
                "on_hand": None,
                "as_of": "2026-11-27T08:40:00Z",
                "snapshot_at": None,
                "pending_delta": 1,
            },
        },
        "spread": 0,
        "in_agreement": True,
    }


def test_the_spread_is_max_minus_min_over_systems_with_a_value() -> None:
    entries = [snapshot("erp", 12, 0), snapshot("pos", 5, 0), snapshot("web", 8, 0), adjust("wms", 100, 1)]
    (location,) = variance(entries)
    assert (location["spread"], location["in_agreement"]) == (7, False)


def test_one_system_alone_is_in_agreement() -> None:
    (location,) = variance([snapshot("web", 3, 0)])
    assert (location["spread"], location["in_agreement"]) == (0, True)


def test_locations_are_reported_separately_and_sorted() -> None:
    entries = [snapshot("erp", 1, 0, "900"), snapshot("erp", 2, 0, "042"), snapshot("pos", 5, 0, "042")]
    result = variance(entries)
    assert [(r["location_id"], r["spread"]) for r in result] == [("042", 3), ("900", 0)]


def test_now_shows_the_stock_as_it_was() -> None:
    entries = [snapshot("erp", 10, 0), adjust("erp", -4, 20), snapshot("erp", 2, 40)]
    (then,) = variance(entries, now_us=at(30))
    assert then["systems"]["erp"]["on_hand"] == 6
    (now,) = variance(entries)
    assert now["systems"]["erp"]["on_hand"] == 2
    assert variance(entries, now_us=at(-1)) == []


def test_sales_and_returns_do_not_move_system_stock() -> None:
    entries = [snapshot("pos", 4, 0), SkuEntry("884-12", "042", "sale", at(5), "o1", qty=2, order_key="W-1")]
    assert variance(entries)[0]["systems"]["pos"]["on_hand"] == 4
    assert variance([SkuEntry("884-12", "042", "sale", at(5), "o1", qty=2)]) == []


def test_totals_count_each_event_once() -> None:
    entries = [
        SkuEntry("884-12", "042", "sale", at(1), "o1", qty=2),
        SkuEntry("884-12", "042", "sale", at(1), "o1", qty=2),  # redelivered
        SkuEntry("884-12", "042", "sale", at(2), "o2", qty=1),
        SkuEntry("884-12", "042", "return", at(3), "r1", qty=-1),
        SkuEntry("884-12", "042", "reservation", at(4), "v1", qty=3),
        SkuEntry("884-12", "online", "sale", at(5), "o3", qty=5),
        SkuEntry("777-01", "042", "sale", at(5), "o3", qty=1),  # another line of the same event
        snapshot("erp", 50, 0),
    ]
    assert sku_totals(entries) == [
        {"sku": "777-01", "location_id": "042", "sold": 1, "returned": 0, "reserved": 0},
        {"sku": "884-12", "location_id": "042", "sold": 3, "returned": 1, "reserved": 3},
        {"sku": "884-12", "location_id": "online", "sold": 5, "returned": 0, "reserved": 0},
    ]


def test_past_tense_kinds_are_understood() -> None:
    entries = [SkuEntry("1", "L", "snapshot", at(0), "s", system="erp", on_hand=5)]
    entries.append(SkuEntry("1", "L", "adjusted", at(1), "a", system="erp", delta=2))
    entries.append(SkuEntry("1", "L", "sold", at(1), "b", qty=1))
    assert variance(entries)[0]["systems"]["erp"]["on_hand"] == 7
    assert sku_totals(entries)[0]["sold"] == 1


def test_unique_keeps_one_copy_per_event_in_time_order() -> None:
    a, b = adjust("erp", 1, 5, key="x"), adjust("erp", 1, 1, key="y")
    assert unique([a, b, a, b]) == [b, a]


@st.composite
def sku_events(draw: st.DrawFn) -> list[SkuEntry]:
    entries = []
    for index in range(draw(st.integers(0, 14))):
        system = draw(st.sampled_from(("erp", "pos", "web", "wms")))
        location = draw(st.sampled_from(("042", "043")))
        minutes = draw(st.integers(0, 30))  # few distinct times: many ties
        kind = draw(st.sampled_from(("snapshot", "adjustment", "sale", "return", "reservation")))
        if kind == "snapshot":
            entries.append(snapshot(system, draw(st.integers(0, 50)), minutes, location, f"k{index}"))
        elif kind == "adjustment":
            entries.append(adjust(system, draw(st.integers(-5, 5)), minutes, location, f"k{index}"))
        else:
            entries.append(
                SkuEntry("884-12", location, kind, at(minutes), f"k{index}", qty=draw(st.integers(-3, 3)))
            )
    return entries


@settings(max_examples=150, deadline=None)
@given(entries=sku_events(), data=st.data())
def test_arrival_order_and_redelivery_do_not_matter(entries: list[SkuEntry], data: st.DataObject) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(entries), max_size=5)) if entries else []
    shuffled = data.draw(st.permutations([*entries, *duplicates]))
    assert variance(shuffled) == variance(entries)
    assert variance(shuffled, at(15)) == variance(entries, at(15))
    assert sku_totals(shuffled) == sku_totals(entries)
    for location in variance(entries):
        values = [s["on_hand"] for s in location["systems"].values() if s["on_hand"] is not None]
        assert location["spread"] == (max(values) - min(values) if values else 0)
