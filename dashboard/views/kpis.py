"""KPI page (executive): the period's headline figures against the previous period, trends by day and
channel, and the stores that stall most. Every figure is the API's (``/api/v1/kpis``), never recomputed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import streamlit as st

from dashboard import figures, theme
from dashboard.client import Api, Problem
from dashboard.sentences import duration_text

CHANNELS = ("web", "app", "store", "marketplace")
ALL = "All channels"


class Card(NamedTuple):
    """A headline figure: ``value`` and ``previous`` as the API gave them (None: no data)."""

    label: str
    value: float | None
    previous: float | None
    unit: str  # "count", "seconds" or "percent"
    lower_is_better: bool
    help: str


def _get(figures_: Mapping[str, Any], *path: str) -> float | None:
    value: Any = figures_
    for step in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return None if value is None else float(value)


def cards(kpis: Mapping[str, Any]) -> list[Card]:
    """The headline cards of a ``/api/v1/kpis`` answer."""
    previous = kpis.get("previous") or {}

    def pair(*path: str) -> tuple[float | None, float | None]:
        return _get(kpis, *path), _get(previous, *path)

    rate, rate_before = pair("stalled", "rate")
    return [
        Card("Orders", *pair("orders", "total"), "count", False, "Orders first seen in the period."),
        Card(
            "Order to ready p50",
            *pair("durations", "order_to_ready", "p50_seconds"),
            "seconds",
            True,
            "Accepted to ready, median.",
        ),
        Card(
            "Order to ready p95",
            *pair("durations", "order_to_ready", "p95_seconds"),
            "seconds",
            True,
            "Accepted to ready, 95th percentile.",
        ),
        Card(
            "Stalled rate",
            None if rate is None else rate * 100,
            None if rate_before is None else rate_before * 100,
            "percent",
            True,
            "Stalled orders as a share of open orders.",
        ),
        Card(
            "Propagation completeness",
            _get(kpis, "promotions", "completeness_avg"),
            None,
            "percent",
            False,
            "Average share of targets that activated the promotions published in the period.",
        ),
        Card(
            "Return to refund p50",
            *pair("durations", "return_to_refund", "p50_seconds"),
            "seconds",
            True,
            "Returned to refunded, median.",
        ),
        Card(
            "Failed postings",
            *pair("failed_postings", "orders"),
            "count",
            True,
            "Orders whose last finance posting failed.",
        ),
    ]


def value_text(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "seconds":
        return duration_text(value)
    if unit == "percent":
        return f"{value:.1f}%"
    return f"{value:,.0f}"


def delta_text(card: Card) -> str | None:
    """The change against the previous period, signed (``+3``, ``-5 min``, ``+12 s``, ``+2.5 pp``); None
    without both."""
    if card.value is None or card.previous is None:
        return None
    change = card.value - card.previous
    sign = "-" if change < 0 else "+"
    if card.unit == "seconds":
        # Under a minute in seconds: "+under a minute" says neither how much nor, at a glance, which way.
        return f"{sign}{abs(change):.0f} s" if abs(change) < 59.5 else f"{sign}{duration_text(abs(change))}"
    if card.unit == "percent":
        return f"{sign}{abs(change):.1f} pp"
    return f"{sign}{abs(change):,.0f}"


def window(start: date, end: date) -> tuple[str, str]:
    """``since`` and ``until`` (RFC 3339) for whole UTC days from ``start`` through ``end``."""
    since = datetime.combine(start, time(), UTC)
    until = datetime.combine(end + timedelta(days=1), time(), UTC)
    return since.isoformat().replace("+00:00", "Z"), until.isoformat().replace("+00:00", "Z")


def period_days(since: str, until: str) -> tuple[date, date]:
    """The first and last UTC day of a ``since``/``until`` window (``until`` exclusive)."""
    start = datetime.fromisoformat(since.replace("Z", "+00:00"))
    end = datetime.fromisoformat(until.replace("Z", "+00:00")) - timedelta(microseconds=1)
    return start.date(), end.date()


def _filters() -> tuple[str, str, str | None, str | None]:
    today = datetime.now(UTC).date()
    period, channel, store = st.columns([2, 1, 1])
    picked = period.date_input(
        "Period (UTC days)", value=(today - timedelta(days=6), today), key="kpi-period"
    )
    days = list(picked) if isinstance(picked, tuple | list) else [picked]
    start = days[0] if days else today
    end = days[-1] if len(days) > 1 else start
    chosen = channel.selectbox("Channel", [ALL, *CHANNELS], key="kpi-channel")
    store_id = store.text_input("Store", placeholder="all stores", key="kpi-store").strip()
    since, until = window(start, end)
    return since, until, None if chosen == ALL else str(chosen), store_id or None


def render() -> None:
    theme.page_header(
        "KPIs", "How fast do orders get ready, how many stall, do promotions reach every store?"
    )
    since, until, channel, store_id = _filters()
    api = Api.from_environment()
    with st.spinner("Loading the figures…"):
        kpis = api.kpis(since, until, channel, store_id)
    if isinstance(kpis, Problem):
        theme.show_problem(kpis, "KPIs")
        return
    first, last = period_days(since, until)
    length = (last - first).days + 1
    st.caption(f"{first:%d %b %Y} to {last:%d %b %Y} (UTC days), compared with the {length} days before.")
    headline = cards(kpis)
    for row in (headline[:4], headline[4:]):
        for column, card in zip(st.columns(4), row, strict=False):
            column.metric(
                card.label,
                value_text(card.value, card.unit),
                delta=delta_text(card),
                delta_color="inverse" if card.lower_is_better else "normal",
                help=card.help,
                border=True,
            )
    series = list(kpis.get("series") or [])
    days = (first.isoformat(), last.isoformat())
    if not series:
        st.info("No order in this period for these filters.")
        return
    orders, ready = st.columns(2)
    with orders:
        st.markdown("**Orders per day by channel**")
        theme.chart(
            figures.kpi_trend(series, "orders", "Orders (count)", days, bars=True), key="trend-orders"
        )
    with ready:
        st.markdown("**Order to ready p50 per day**")
        theme.chart(
            figures.kpi_trend(series, "order_to_ready_p50_seconds", "Order to ready p50 (min)", days, 1 / 60),
            key="trend-ready",
        )
    stalled, stores = st.columns(2)
    with stalled:
        st.markdown("**Stalled orders per day by channel**")
        theme.chart(
            figures.kpi_trend(series, "stalled", "Stalled orders (count)", days, bars=True),
            key="trend-stalled",
        )
    with stores:
        st.markdown("**Top stores by stalled rate**")
        top = list(kpis.get("top_stalled_stores") or [])
        if top:
            theme.chart(figures.top_stores(top), key="top-stores")
        else:
            st.caption("No store has open orders in this period.")


if __name__ == "__main__":
    render()
