"""SKU page (store manager): each system's stock per location over time, where they disagree, and why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # only for the Styler that highlights rows
import streamlit as st

from dashboard import figures, theme
from dashboard.client import NOT_FOUND, Api, Problem
from dashboard.sentences import duration_text, parse_time, stock_summary, system_name

SEARCH_KEY = "sku"  # also the deep link's query parameter: /?sku=SKU


# stock_table's columns other than one per system.
LOCATION, SPREAD, AGREEMENT = "location", "spread (units)", "in agreement"


def stock_table(stock: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per location, one column per system's on_hand (units), then the spread."""
    systems = sorted({system_name(name) for location in stock for name in location.get("systems", {})})
    rows = []
    for location in stock:
        on_hand = {system_name(k): v.get("on_hand") for k, v in location.get("systems", {}).items()}
        rows.append(
            {
                LOCATION: location["location_id"],
                **{system: on_hand.get(system) for system in systems},
                SPREAD: location.get("spread", 0),
                AGREEMENT: bool(location.get("in_agreement")),
            }
        )
    return pd.DataFrame(rows)


def _highlight_disagreement(row: pd.Series) -> list[str]:
    colour = "background-color: #FDECEA; color: #8E1B1B" if not row.get(AGREEMENT, True) else ""
    return [colour] * len(row)


def _system_cards(location: Mapping[str, Any], now: datetime) -> None:
    systems = list(location.get("systems", {}).items())
    if not systems:
        return
    for column, (system, figures_) in zip(st.columns(len(systems)), systems, strict=True):
        as_of = figures_.get("as_of")
        age = (
            f"as of {duration_text((now - parse_time(as_of)).total_seconds())} ago"
            if as_of
            else "no count yet"
        )
        pending = int(figures_.get("pending_delta") or 0)
        column.metric(
            f"{system_name(system)} at {location['location_id']}",
            "—" if figures_.get("on_hand") is None else f"{figures_['on_hand']} units",
            delta=f"{pending:+d} since last count" if pending else None,
            delta_color="off",
            help=age,
        )


def _events_table(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "time (UTC)": e.get("time"),
            "kind": e.get("kind"),
            "location": e.get("location_id"),
            "system": system_name(str(e["system"])) if e.get("system") else "",
            "qty": e.get("qty") or None,
            "on hand": e.get("on_hand"),
            "delta": e.get("delta") or None,
            "order": theme.deep_link("order", str(e["order_id"])) if e.get("order_id") else None,
            "reason": e.get("reason") or "",
        }
        for e in reversed(list(events))
    ]


def render() -> None:
    theme.page_header(
        "SKU", "Why does the shelf differ from what online shows? Stock as each system sees it."
    )
    sku = st.text_input("SKU", key=SEARCH_KEY, bind="query-params", placeholder="e.g. 884-12").strip()
    if not sku:
        st.info("Type a SKU to see its stock per system and location, and every sale, return and count.")
        return
    api = Api.from_environment()
    with st.spinner("Loading the SKU…"):
        answer = api.sku(sku)
    if isinstance(answer, Problem):
        if answer.kind == NOT_FOUND:
            st.warning(
                f"SKU '{sku}' is not known to Milepost: no event has named it.", icon=":material/search_off:"
            )
        else:
            theme.show_problem(answer)
        return
    now = datetime.now(UTC)
    theme.show_summary(stock_summary(answer))
    stock = [loc for loc in answer.get("stock") or [] if loc.get("systems")]
    events = list(answer.get("events") or [])
    if stock:
        st.markdown("**Stock by location** (rows where the systems disagree are highlighted)")
        table = stock_table(stock)
        styled = table.style.apply(_highlight_disagreement, axis=1).format(precision=0)
        # Streamlit shows a missing number as "None" whatever the Styler says: each system's column
        # says what that means, so "None" is not read as "none in stock".
        counts = {
            column: st.column_config.NumberColumn(
                column, help=f"Units on hand as {column} counts them; None: {column} keeps no count here."
            )
            for column in table.columns
            if column not in (LOCATION, SPREAD, AGREEMENT)
        }
        st.dataframe(styled, hide_index=True, width="stretch", column_config=counts)
        widest = max(stock, key=lambda loc: int(loc.get("spread") or 0))
        names = [str(loc["location_id"]) for loc in stock]
        chosen = st.selectbox(
            "Location", names, index=names.index(str(widest["location_id"])), key="location"
        )
        location = next(loc for loc in stock if loc["location_id"] == chosen)
        _system_cards(location, now)
        theme.chart(figures.stock_history(events, location, now), key="stock")
    if answer.get("totals"):
        st.markdown("**Units moved by orders**")
        totals = [
            {
                "location": row.get("location_id"),
                "sold (units)": row.get("sold"),
                "returned (units)": row.get("returned"),
                "reserved (units)": row.get("reserved"),
            }
            for row in answer["totals"]
        ]
        st.dataframe(totals, hide_index=True, width="stretch")
    st.markdown(f"**Events of {sku}** (newest first)")
    kinds = sorted({str(e.get("kind")) for e in events})
    shown = st.multiselect("Kinds", kinds, default=kinds, key="kinds")
    st.dataframe(
        _events_table([e for e in events if e.get("kind") in shown]),
        hide_index=True,
        width="stretch",
        column_config={"order": st.column_config.LinkColumn("order", display_text=theme.LINK_TEXT)},
    )


if __name__ == "__main__":
    render()
