"""Operations page (ops and integration team): stuck orders, promotions that have not reached every
store, active alerts with their silences, and whether ingest is healthy.

Each of the four is a tab, and only the open tab runs: the stalled orders (the first tab) are on
screen without waiting for the promotion charts, alerts and metrics. The open tab is in the URL
(``/operations?view=Alerts``); a promotion deep link (``/?promotion=ID``) opens Promotions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from dashboard import figures, theme
from dashboard.client import NOT_FOUND, REFUSED, Api, Problem
from dashboard.exposition import IngestHealth, byte_text, ingest_health, rates
from dashboard.sentences import duration_text, promotion_summary
from dashboard.silencing import (
    MatcherError,
    alert_row,
    by_urgency,
    ends_at,
    matcher_text,
    parse_matchers,
    silence_row,
)

PROMOTION_KEY = "promotion"  # also the deep link's query parameter: /?promotion=ID
VIEW_KEY = "view"  # the open tab, also a query parameter: /operations?view=Alerts
STALLED_ORDERS, PROMOTIONS, ALERTS, INGEST = "Stalled orders", "Promotions", "Alerts", "Ingest health"
ALL = "All"
CHART_PROMOTIONS = 12  # the most recent promotions drawn; older ones stay in the table
SILENCE_HOURS = {"1 hour": 1.0, "4 hours": 4.0, "1 day": 24.0, "1 week": 168.0}
_ADMIN_NEEDED = "Silences need a token with the admin scope"
_QUARANTINE_COLUMNS = ("received_at", "signal", "source", "type", "field", "value", "reason")
_ORDER_LINK = st.column_config.LinkColumn("order", display_text=theme.LINK_TEXT)


# -- stalled orders ----------------------------------------------------------------------------


def stalled_rows(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per stalled order summary, the most overdue first."""
    rows = [
        {
            "order": theme.deep_link("order", str(item["order_id"])),
            "store": item.get("store_id") or "",
            "channel": item.get("channel") or "",
            "fulfillment": item.get("fulfillment") or "",
            "stuck after": item["stalled"]["after"],
            "waiting for": item["stalled"]["expected"],
            "due (UTC)": item["stalled"]["due"],
            "overdue": duration_text(float(item["stalled"]["overdue_seconds"])),
            "overdue (min)": round(float(item["stalled"]["overdue_seconds"]) / 60, 1),
        }
        for item in items
        if item.get("stalled")
    ]
    return sorted(rows, key=lambda row: -float(row["overdue (min)"]))


def _choice(column: Any, label: str, values: Sequence[str], key: str) -> str:
    return str(column.selectbox(label, [ALL, *sorted(set(values))], key=key))


def _stalled(api: Api) -> None:
    with st.spinner("Loading stalled orders…"):
        listing = api.orders(status="stalled", limit=1000)
    if isinstance(listing, Problem):
        theme.show_problem(listing, "Stalled orders")
        return
    rows = stalled_rows(listing.get("items") or [])
    if not rows:
        st.success("No order is past its SLA.", icon=":material/check_circle:")
        return
    store, channel, milestone, age = st.columns(4)
    chosen = {
        "store": _choice(store, "Store", [r["store"] for r in rows], "stalled-store"),
        "channel": _choice(channel, "Channel", [r["channel"] for r in rows], "stalled-channel"),
        "waiting for": _choice(
            milestone, "Waiting for milestone", [r["waiting for"] for r in rows], "stalled-milestone"
        ),
    }
    minimum = age.number_input("Overdue at least (min)", min_value=0, value=0, step=5, key="stalled-age")
    shown = [
        row
        for row in rows
        if row["overdue (min)"] >= minimum and all(v in (ALL, row[c]) for c, v in chosen.items())
    ]
    total = int(listing.get("total", len(rows)))
    more = f" (the first {len(rows)} are listed)" if total > len(rows) else ""
    st.caption(f"{len(shown)} of {total} stalled orders match{more}. Click an order id to open it.")
    st.dataframe(shown, hide_index=True, width="stretch", column_config={"order": _ORDER_LINK})


# -- promotions --------------------------------------------------------------------------------


def target_rows(promotion: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "target": t["target"],
            "status": str(t.get("status", "")).replace("_", " "),
            "activated (UTC)": t.get("activated_at") or "",
            "lag": duration_text(float(t["lag_seconds"])) if t.get("lag_seconds") is not None else "",
        }
        for t in promotion.get("targets") or []
    ]


def _promotion_detail(promotion: Mapping[str, Any], now: datetime) -> None:
    theme.show_summary(promotion_summary(promotion, now))
    completeness, p50, p95, stragglers = st.columns(4)
    completeness.metric("Completeness", f"{float(promotion.get('completeness') or 0):g}%")
    for column, name in ((p50, "lag_p50_seconds"), (p95, "lag_p95_seconds")):
        value = promotion.get(name)
        label = "Lag p50" if name == "lag_p50_seconds" else "Lag p95"
        column.metric(label, duration_text(float(value)) if value is not None else "—")
    stragglers.metric("Stragglers", len(promotion.get("stragglers") or []))
    if promotion.get("stragglers"):
        st.markdown("**Stragglers:** " + ", ".join(f"`{s}`" for s in promotion["stragglers"]))
    st.dataframe(target_rows(promotion), hide_index=True, width="stretch")


def _promotions(api: Api, now: datetime) -> None:
    with st.spinner("Loading promotions…"):
        listing = api.promotions()
    if isinstance(listing, Problem):
        theme.show_problem(listing, "Promotions")
        return
    items = list(listing.get("items") or [])
    ids = [str(item["promo_id"]) for item in items]
    requested = st.query_params.get(PROMOTION_KEY)
    if requested and requested not in ids:
        st.warning(f"Promotion '{requested}' is not known to Milepost.", icon=":material/search_off:")
    if not items:
        st.info("No promotion or price change has been published yet.")
        return
    chosen = st.selectbox(
        "Promotion", ids, index=None, key=PROMOTION_KEY, bind="query-params", placeholder="Choose a promotion"
    )
    if chosen:
        detail = api.promotion(str(chosen))
        if isinstance(detail, Problem):
            theme.show_problem(detail, f"Promotion {chosen}")
        else:
            st.subheader(f"Promotion {chosen}")
            _promotion_detail(detail, now)
    with st.spinner("Loading each promotion's targets…"):
        details = [
            d for d in (api.promotion(i) for i in ids[:CHART_PROMOTIONS]) if not isinstance(d, Problem)
        ]
    curves, heatmap = st.columns(2)
    with curves:
        st.markdown("**Completeness over time**")
        theme.chart(figures.completeness_curves(details, now), key="completeness")
    with heatmap:
        st.markdown("**Activation lag per store**")
        theme.chart(figures.lag_heatmap(details), key="lag-heatmap")
    st.markdown("**All promotions** (newest first)")
    st.dataframe(
        items,
        hide_index=True,
        width="stretch",
        column_config={
            "completeness": st.column_config.ProgressColumn(
                "completeness", min_value=0, max_value=100, format="%.1f%%"
            ),
            "lag_p95_seconds": st.column_config.NumberColumn("lag p95 (s)"),
        },
    )


# -- alerts and silences -----------------------------------------------------------------------


def _alerts(api: Api, now: datetime) -> None:
    alerts = api.alerts(state="firing")
    if isinstance(alerts, Problem):
        if alerts.kind == NOT_FOUND:
            st.info(
                "This node does not serve alerts yet (GET /api/v1/alerts answered 404): "
                "firing alerts and their silences appear here once it does.",
                icon=":material/notifications_off:",
            )
        else:
            theme.show_problem(alerts, "Alerts")
        return
    rows = by_urgency(alert_row(a) for a in alerts)
    if rows:
        st.caption(f"{len(rows)} firing, most severe first, then the longest firing.")
        st.dataframe(
            [
                {
                    "alert": r.name,
                    "severity": r.severity,
                    "since": r.since,
                    "open": r.link or None,
                    "summary": r.summary,
                    "labels": matcher_text(r.labels),
                    "state": r.state,
                }
                for r in rows
            ],
            hide_index=True,
            width="stretch",
            column_config={"open": st.column_config.LinkColumn("open", display_text="open view")},
        )
    else:
        st.success("No alert is firing.", icon=":material/notifications:")
    _silence_form(api, now, [matcher_text(r.labels) for r in rows if r.labels])
    _silences(api)


def _copy_preset() -> None:
    st.session_state["silence-matchers"] = st.session_state.get("silence-preset") or ""


def _silence_form(api: Api, now: datetime, suggestions: list[str]) -> None:
    with st.expander("Silence alerts", expanded=False):
        st.selectbox(
            "Copy the labels of a firing alert",
            ["", *suggestions],
            key="silence-preset",
            on_change=_copy_preset,
        )
        with st.form("silence", clear_on_submit=False):
            matchers = st.text_input("Matchers (label=value, comma separated)", key="silence-matchers")
            duration = st.selectbox("For", list(SILENCE_HOURS), index=1, key="silence-for")
            comment = st.text_input("Comment", key="silence-comment")
            author = st.text_input("Created by", key="silence-author")
            if not st.form_submit_button("Silence"):
                return
        try:
            parsed = parse_matchers(matchers)
        except MatcherError as exc:
            st.error(str(exc))
            return
        answer = api.create_silence(
            parsed, ends_at(now, SILENCE_HOURS[str(duration)]), comment, author or "dashboard"
        )
        if isinstance(answer, Problem):
            theme.show_problem(answer, _ADMIN_NEEDED if answer.kind == REFUSED else "Silence")
        else:
            st.success(f"Silenced {matcher_text(parsed)} for {duration}.")


def _expire(api: Api, silence_id: str) -> None:
    answer = api.expire_silence(silence_id)
    if isinstance(answer, Problem):
        what = _ADMIN_NEEDED if answer.kind == REFUSED else f"Silence {silence_id}"
        st.session_state["silence-outcome"] = Problem(answer.kind, answer.message, answer.status), what
    else:
        st.session_state["silence-outcome"] = f"Silence {silence_id} expired.", ""


def _silences(api: Api) -> None:
    silences = api.silences()
    if isinstance(silences, Problem):
        if silences.kind != NOT_FOUND:
            theme.show_problem(silences, "Silences")
        return
    outcome, what = st.session_state.pop("silence-outcome", (None, ""))
    if isinstance(outcome, Problem):
        theme.show_problem(outcome, what)
    elif outcome:
        st.success(outcome)
    active = [row for row in (silence_row(s) for s in silences) if row.state != "expired"]
    st.markdown(f"**Silences** ({len(active)} active or pending)")
    for silence in active:
        text, button = st.columns([5, 1])
        text.markdown(
            f"`{matcher_text(silence.matchers)}` until {silence.ends_at} — {silence.comment or 'no comment'} "
            f"({silence.created_by or 'unknown'}, {silence.state or 'active'})"
        )
        button.button(
            "Expire", key=f"expire-{silence.silence_id}", on_click=_expire, args=(api, silence.silence_id)
        )


# -- ingest health -----------------------------------------------------------------------------


def _remember(health: IngestHealth) -> tuple[float, IngestHealth] | None:
    """The previous scrape of this session (for rates), after storing this one."""
    previous: tuple[float, IngestHealth] | None = st.session_state.get("ingest-previous")
    st.session_state["ingest-previous"] = (time.monotonic(), health)
    return previous


@st.fragment(run_every=15)
def _ingest(api: Api) -> None:
    text = api.metrics()
    if isinstance(text, Problem):
        theme.show_problem(text, "Ingest metrics")
        return
    health = ingest_health(text)
    previous = _remember(health)
    accepted_rate: dict[str, float] = {}
    rejected_rate: dict[str, float] = {}
    if previous is not None:
        elapsed = time.monotonic() - previous[0]
        accepted_rate = rates(previous[1].accepted, health.accepted, elapsed)
        rejected_rate = rates(previous[1].rejected, health.rejected, elapsed)
    accepted, rejected, quarantined, wal, storage = st.columns(5)
    rate = f"{sum(accepted_rate.values()):,.1f}/s" if previous is not None else None
    accepted.metric(
        "Accepted",
        f"{sum(health.accepted.values()):,.0f}",
        delta=rate,
        delta_color="off",
        help="Since the node started; the rate appears from the second read (every 15 s).",
    )
    rejected.metric(
        "Rejected",
        f"{sum(health.rejected.values()):,.0f}",
        delta=f"{sum(rejected_rate.values()):,.1f}/s" if previous is not None else None,
        delta_color="inverse",
    )
    quarantined.metric("Quarantined", f"{sum(health.quarantined.values()):,.0f}")
    wal.metric("WAL backlog", byte_text(health.wal_bytes), help="Acknowledged bytes not yet in storage.")
    storage.metric(
        "Storage", "up" if health.storage_up else "DOWN", help=f"{health.insert_errors:,.0f} failed writes"
    )
    st.dataframe(
        [
            {
                "signal": signal,
                "accepted": health.accepted.get(signal, 0),
                # None until a second read gives a rate: 0/s would say nothing is arriving.
                "accepted/s": round(accepted_rate.get(signal, 0.0), 2) if previous is not None else None,
                "rejected": health.rejected.get(signal, 0),
                "quarantined": health.quarantined.get(signal, 0),
                "duplicates": health.duplicates.get(signal, 0),
            }
            for signal in health.signals
        ],
        hide_index=True,
        width="stretch",
        column_config={
            "accepted/s": st.column_config.NumberColumn(
                "accepted/s", help="Items per second between two reads; None until the second (15 s)."
            )
        },
    )
    quarantine = api.quarantine(limit=10)
    if isinstance(quarantine, Problem) or not quarantine.get("items"):
        return
    st.markdown(f"**Quarantine** ({quarantine.get('total', 0)} unresolved, newest first)")
    st.dataframe(
        [{column: item.get(column) for column in _QUARANTINE_COLUMNS} for item in quarantine["items"]],
        hide_index=True,
        width="stretch",
    )


def render() -> None:
    theme.page_header(
        "Operations", "Which orders are stuck, where, since when? Which stores still sell at the old price?"
    )
    api = Api.from_environment()
    now = datetime.now(UTC)
    if st.query_params.get(PROMOTION_KEY) and VIEW_KEY not in st.session_state:
        st.session_state[VIEW_KEY] = PROMOTIONS  # a deep link to a promotion opens its tab
    sections: dict[str, Callable[[], None]] = {
        STALLED_ORDERS: lambda: _stalled(api),
        PROMOTIONS: lambda: _promotions(api, now),
        ALERTS: lambda: _alerts(api, now),
        INGEST: lambda: _ingest(api),
    }
    tabs = st.tabs(list(sections), key=VIEW_KEY, bind="query-params")
    for tab, draw in zip(tabs, sections.values(), strict=True):
        if tab.open:
            with tab:
                draw()


if __name__ == "__main__":
    render()
