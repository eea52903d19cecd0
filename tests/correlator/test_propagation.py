"""Promotion propagation: per-target lag and status, completeness, percentiles, stragglers, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.model import PromotionEntry
from correlator.propagation import (
    PromotionError,
    PromotionSettings,
    parse_promotions,
    percentile,
    promotion_summary,
    propagation,
)
from milepost.config import ConfigError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = (datetime(2026, 11, 27, 9, 0, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
MIN = 60_000_000
TEN_MINUTES = PromotionSettings()


def at(minutes: float) -> int:
    return T0 + round(minutes * MIN)


def published(
    targets: tuple[str, ...] = ("001", "002", "003", "004"), effective: int | None = None
) -> PromotionEntry:
    return PromotionEntry(
        "SPRING-10", "published", T0, "pub", targets=targets, effective_us=effective, skus=("884-12",)
    )


def activated(target: str, minutes: float, key: str | None = None) -> PromotionEntry:
    return PromotionEntry(
        "SPRING-10", "activated", at(minutes), key or f"act-{target}-{minutes}", target=target
    )


def by_target(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = result["targets"]
    assert isinstance(rows, list)
    return {row["target"]: row for row in rows}


def test_each_target_gets_lag_and_status() -> None:
    result = propagation(published(), [activated("001", 2), activated("002", 25)], [], at(15), TEN_MINUTES)
    rows = by_target(result)
    assert rows["001"] == {
        "target": "001",
        "activated_at": "2026-11-27T09:02:00Z",
        "lag_seconds": 120.0,
        "status": "on_time",
    }
    assert rows["002"]["status"] == "late" and rows["002"]["lag_seconds"] == 1500.0
    assert rows["003"] == {"target": "003", "activated_at": None, "lag_seconds": None, "status": "missing"}
    assert result["promo_id"] == "SPRING-10"
    assert result["kind"] == "promotion"
    assert result["published_at"] == "2026-11-27T09:00:00Z"
    assert result["effective_at"] is None
    assert result["skus"] == ["884-12"]
    assert result["completeness"] == 50.0
    assert result["stragglers"] == ["002", "003", "004"]


def test_not_activated_is_pending_within_the_threshold_then_missing() -> None:
    assert by_target(propagation(published(), [], [], at(10), TEN_MINUTES))["001"]["status"] == "pending"
    assert by_target(propagation(published(), [], [], at(10) + 1, TEN_MINUTES))["001"]["status"] == "missing"


def test_the_threshold_is_inclusive_for_activations() -> None:
    rows = by_target(propagation(published(), [activated("001", 10)], [], at(60), TEN_MINUTES))
    assert rows["001"]["status"] == "on_time"
    rows = by_target(propagation(published(), [activated("001", 10)], [], at(60), PromotionSettings(599)))
    assert rows["001"]["status"] == "late"


def test_lag_counts_from_the_effective_time_when_it_is_later() -> None:
    result = propagation(
        published(effective=at(60)), [activated("001", 65), activated("002", 30)], [], at(65), TEN_MINUTES
    )
    rows = by_target(result)
    assert result["effective_at"] == "2026-11-27T10:00:00Z"
    assert rows["001"]["lag_seconds"] == 300.0
    # Activated before it took effect: early counts as on time, with no negative lag.
    assert rows["002"] == {
        "target": "002",
        "activated_at": "2026-11-27T09:30:00Z",
        "lag_seconds": 0.0,
        "status": "on_time",
    }
    assert rows["003"]["status"] == "pending"


def test_a_future_promotion_is_pending_everywhere() -> None:
    result = propagation(published(effective=at(600)), [], [], at(30), TEN_MINUTES)
    assert {row["status"] for row in by_target(result).values()} == {"pending"}
    assert result["stragglers"] == []


def test_without_published_targets_every_known_target_is_expected() -> None:
    result = propagation(
        published(targets=()), [activated("010", 1)], ["010", "011", "web"], at(30), TEN_MINUTES
    )
    assert list(by_target(result)) == ["010", "011", "web"]
    assert result["completeness"] == 33.3
    assert result["stragglers"] == ["011", "web"]


def test_an_unlisted_target_that_activated_is_still_reported() -> None:
    result = propagation(
        published(targets=("001",)), [activated("001", 1), activated("099", 20)], [], at(30), TEN_MINUTES
    )
    assert by_target(result)["099"]["status"] == "late"
    assert result["completeness"] == 100.0


def test_a_target_activating_twice_keeps_its_first_activation() -> None:
    result = propagation(
        published(), [activated("001", 30), activated("001", 3), activated("001", 3)], [], at(40), TEN_MINUTES
    )
    assert by_target(result)["001"]["lag_seconds"] == 180.0
    assert result["completeness"] == 25.0


def test_percentiles_are_nearest_rank_over_activated_targets() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([float(v) for v in range(1, 21)], 95) == 19.0
    assert percentile([float(v) for v in range(1, 22)], 95) == 20.0
    result = propagation(
        published(), [activated("001", 1), activated("002", 2), activated("003", 30)], [], at(40), TEN_MINUTES
    )
    assert (result["lag_p50_seconds"], result["lag_p95_seconds"]) == (120.0, 1800.0)
    empty = propagation(published(), [], [], at(40), TEN_MINUTES)
    assert (empty["lag_p50_seconds"], empty["lag_p95_seconds"]) == (None, None)


def test_the_completeness_curve_steps_up_at_each_activation() -> None:
    activations = [activated("003", 7), activated("001", -5), activated("002", 7, "b"), activated("004", 12)]
    result = propagation(published(effective=at(0)), activations, [], at(40), TEN_MINUTES)
    assert result["completeness_curve"] == [
        {"time": "2026-11-27T09:00:00Z", "completeness": 0.0},
        {"time": "2026-11-27T09:00:00Z", "completeness": 25.0},
        {"time": "2026-11-27T09:07:00Z", "completeness": 75.0},
        {"time": "2026-11-27T09:12:00Z", "completeness": 100.0},
    ]


def test_activations_without_a_publication_start_at_the_first_activation() -> None:
    result = propagation(
        None, [activated("002", 20), activated("001", 5)], ["001", "002", "003"], at(16), TEN_MINUTES
    )
    assert result["published_at"] is None and result["kind"] is None
    rows = by_target(result)
    assert rows["001"]["lag_seconds"] == 0.0
    assert rows["002"]["lag_seconds"] == 900.0 and rows["002"]["status"] == "late"
    assert rows["003"]["status"] == "missing"
    assert result["completeness_curve"][0] == {"time": "2026-11-27T09:05:00Z", "completeness": 0.0}


def test_nothing_known_is_an_error() -> None:
    with pytest.raises(ValueError, match="publication or at least one activation"):
        propagation(None, [], ["001"], at(1), TEN_MINUTES)


def test_times_keep_microseconds_when_there_are_some() -> None:
    result = propagation(
        published(),
        [PromotionEntry("SPRING-10", "activated", T0 + 1, "x", target="001")],
        [],
        at(1),
        TEN_MINUTES,
    )
    assert by_target(result)["001"]["activated_at"] == "2026-11-27T09:00:00.000001Z"
    assert by_target(result)["001"]["lag_seconds"] == 0.000001


def test_the_summary_has_the_list_figures() -> None:
    summary = promotion_summary(
        published(), [activated("001", 2), activated("002", 25)], [], at(15), TEN_MINUTES
    )
    assert summary == {
        "promo_id": "SPRING-10",
        "kind": "promotion",
        "published_at": "2026-11-27T09:00:00Z",
        "effective_at": None,
        "completeness": 50.0,
        "target_count": 4,
        "straggler_count": 3,
        "lag_p95_seconds": 1500.0,
    }


def test_settings_parse_the_lag_threshold() -> None:
    assert parse_promotions(None) == PromotionSettings(600.0)
    assert parse_promotions({}) == PromotionSettings(600.0)
    assert parse_promotions({"lag_threshold": "15m"}).lag_threshold_s == 900.0
    assert parse_promotions({"lag_threshold": 30}).lag_threshold_us == 30_000_000


@pytest.mark.parametrize(
    ("raw", "key", "value"),
    [
        ({"lag_threshold": "soon"}, "promotions.lag_threshold", "soon"),
        ({"lag_threshold": -5}, "promotions.lag_threshold", "-5"),
        ({"lag_treshold": "5m"}, "promotions.lag_treshold", "5m"),
    ],
)
def test_bad_settings_name_the_key_and_value(raw: dict[str, object], key: str, value: str) -> None:
    with pytest.raises(PromotionError) as caught:
        parse_promotions(raw)
    assert f"'{key}'" in str(caught.value) and f"'{value}'" in str(caught.value)
    assert isinstance(caught.value, ConfigError)


@settings(max_examples=100, deadline=None)
@given(
    minutes=st.lists(
        st.tuples(st.sampled_from(("001", "002", "003", "009")), st.integers(-30, 120)), max_size=8
    ),
    data=st.data(),
)
def test_activation_order_and_duplicates_do_not_matter(
    minutes: list[tuple[str, int]], data: st.DataObject
) -> None:
    activations = [activated(target, m, f"k{i}") for i, (target, m) in enumerate(minutes)]
    shuffled = data.draw(st.permutations(activations + activations[:3]))
    first = propagation(published(), activations, [], at(60), TEN_MINUTES)
    assert propagation(published(), shuffled, [], at(60), TEN_MINUTES) == first
    assert 0.0 <= first["completeness"] <= 100.0
    assert all(row["lag_seconds"] is None or row["lag_seconds"] >= 0 for row in by_target(first).values())
