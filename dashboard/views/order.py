"""Order page (store manager): any id the manager holds in, the whole order out, the sentence first."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from dashboard import figures, theme
from dashboard.client import NOT_FOUND, Api, Problem
from dashboard.sentences import detail_fields, duration_text, milestone_word, order_summary, system_name

SEARCH_KEY = "order"  # also the deep link's query parameter: /?order=KEY


def near_matches(key: str, known: Sequence[str], limit: int = 5) -> list[str]:
    """Known ids that look like ``key`` (the same stem, or similar spelling), most similar first."""
    wanted = key.strip().upper()
    if not wanted:
        return []
    stem = wanted[: max(len(wanted) - 2, 3)]
    by_upper = {k.upper(): k for k in known}
    close = difflib.get_close_matches(wanted, list(by_upper), n=limit, cutoff=0.6)
    candidates = {k for k in by_upper if k.startswith(stem)} | set(close)
    candidates.discard(wanted)

    def closeness(candidate: str) -> tuple[float, int, str]:
        shared = next(
            (i for i, (a, b) in enumerate(zip(wanted, candidate, strict=False)) if a != b), len(candidate)
        )
        return -difflib.SequenceMatcher(None, wanted, candidate).ratio(), -shared, candidate

    return [by_upper[k] for k in sorted(candidates, key=closeness)][:limit]


def _pick(order_id: str) -> None:
    st.session_state[SEARCH_KEY] = order_id


def _not_known(api: Api, key: str) -> None:
    st.warning(f"Order '{key}' is not known to Milepost under any of its ids.", icon=":material/search_off:")
    listing = api.orders(status="all", limit=1000)
    if isinstance(listing, Problem):
        return
    suggestions = near_matches(key, [str(item["order_id"]) for item in listing.get("items", [])])
    if not suggestions:
        st.caption("No known order id looks like it. Check the id on the receipt or in the source system.")
        return
    st.markdown("**Did you mean**")
    with st.container(horizontal=True):
        for suggestion in suggestions:
            st.button(suggestion, key=f"suggest-{suggestion}", on_click=_pick, args=(suggestion,))


def _headline(order: Mapping[str, Any]) -> None:
    stalled = order.get("stalled") or {}
    fulfillment = str(order.get("fulfillment") or "")
    state, waiting, overdue, store = st.columns(4)
    state.metric("State", milestone_word(str(order.get("state") or "—"), fulfillment) or "—")
    waiting.metric("Waiting for", milestone_word(str(stalled["expected"]), fulfillment) if stalled else "—")
    overdue.metric("Overdue by", duration_text(float(stalled["overdue_seconds"])) if stalled else "—")
    store.metric("Store", str(order.get("store_id") or "—"))


def _milestone_rows(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    fulfillment = str(order.get("fulfillment") or "")
    return [
        {
            "milestone": milestone_word(str(m["milestone"]), fulfillment),
            "time (UTC)": m["time"],
            "system": system_name(str(m.get("source", ""))),
            "source": m.get("source"),
            "event": m.get("event_id"),
            "under id": m.get("key"),
            "status": m.get("status"),
            "detail": ", ".join(f"{k}: {v}" for k, v in detail_fields(m.get("detail")).items()),
            "trace": m.get("trace_id") or "",
        }
        for m in order.get("milestones") or []
    ]


def _linked_rows(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "what": e.get("name"),
            "kind": e.get("kind"),
            "time (UTC)": e.get("time"),
            "system": system_name(str(e.get("source", ""))),
            "status": e.get("status"),
            "detail": ", ".join(f"{k}: {v}" for k, v in detail_fields(e.get("detail")).items()),
            "trace": e.get("trace_id") or "",
        }
        for e in order.get("events") or []
    ]


def trace_choices(order: Mapping[str, Any]) -> dict[str, str]:
    """Trace id → label, traces with a failing span or event first."""
    linked = [*order.get("events", []), *order.get("milestones", [])]
    choices: dict[str, tuple[bool, str]] = {}
    for entry in linked:
        trace_id = entry.get("trace_id")
        if not trace_id:
            continue
        failed = entry.get("status") == "error"
        name = entry.get("name") or entry.get("milestone") or ""
        label = f"{name} — {system_name(str(entry.get('source', '')))}" + (" (error)" if failed else "")
        if trace_id not in choices or (failed and not choices[trace_id][0]):
            choices[str(trace_id)] = (failed, label)
    ranked = sorted(choices.items(), key=lambda item: not item[1][0])
    return {trace_id: f"{label} · {trace_id[:8]}…" for trace_id, (_, label) in ranked}


def _trace(api: Api, order: Mapping[str, Any]) -> None:
    choices = trace_choices(order)
    st.subheader("Trace")
    if not choices:
        st.caption("No span carries this order's ids, so there is no trace to drill into.")
        return
    trace_id = st.selectbox("Trace of", list(choices), format_func=choices.__getitem__, key="trace")
    with st.spinner("Loading the trace…"):
        trace = api.trace(str(trace_id))
    if isinstance(trace, Problem):
        theme.show_problem(trace, "Trace")
        return
    spans = list(trace.get("spans") or [])
    theme.chart(figures.trace_waterfall(spans), key="waterfall")
    failing = [s for s in spans if (s.get("status") or {}).get("code") == "error"]
    for span in failing:
        message = (span.get("status") or {}).get("message") or "no message"
        st.markdown(
            f"{theme.status_badge('error')} **{span['name']}** in `{span.get('service_name')}`: {message}"
        )


def _show(api: Api, order: Mapping[str, Any], key: str, now: datetime) -> None:
    order_id = str(order["order_id"])
    facts = [str(order.get(f)) for f in ("channel", "fulfillment") if order.get(f)]
    if order.get("store_id"):
        facts.append(f"store {order['store_id']}")
    if key != order_id:
        facts.append(f"found by {key}")
    st.subheader(f"Order {order_id}")
    st.caption(" · ".join(facts))
    theme.show_summary(order_summary(order, now))
    _headline(order)
    theme.chart(figures.order_timeline(order, now), key="timeline")
    aliases, anomalies = st.columns(2)
    with aliases:
        st.markdown("**Also known as**")
        if order.get("aliases"):
            st.dataframe(list(order["aliases"]), hide_index=True, width="stretch")
        else:
            st.caption("No other id is linked to this order.")
    with anomalies:
        st.markdown("**Anomalies**")
        for anomaly in order.get("anomalies") or []:
            st.markdown(f"{theme.status_badge('error')} {anomaly['kind']}: {anomaly['detail']}")
        if not order.get("anomalies"):
            st.caption("The systems agree on this order.")
    st.markdown("**Milestones and their source events**")
    st.dataframe(_milestone_rows(order), hide_index=True, width="stretch")
    if order.get("events"):
        st.markdown("**Linked spans and events**")
        st.dataframe(_linked_rows(order), hide_index=True, width="stretch")
    _trace(api, order)


def render() -> None:
    theme.page_header(
        "Order", "Where is the order? Paste any id: web order, pickup code, POS receipt, ERP document."
    )
    key = st.text_input(
        "Order id",
        key=SEARCH_KEY,
        bind="query-params",
        placeholder="e.g. W-10023, R-042-77812 or P-4821",
    ).strip()
    if not key:
        st.info("Type or paste an id to see the order's timeline, what is late and what to do next.")
        return
    api = Api.from_environment()
    with st.spinner("Looking up the order…"):
        order = api.order(key)
    if isinstance(order, Problem):
        if order.kind == NOT_FOUND:
            _not_known(api, key)
        else:
            theme.show_problem(order)
        return
    _show(api, order, key, datetime.now(UTC))


if __name__ == "__main__":
    render()
