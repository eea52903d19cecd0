"""The dashboard's entry (``streamlit run dashboard/app.py``): page frame and navigation.

Deep links open their view directly: ``/?order=KEY`` the Order page, ``/?sku=SKU`` the SKU page,
``/?promotion=ID`` the Operations page (alerts link to them). The Order page is the root; a link to
the root that names another view switches to that view's own path (``/sku?sku=SKU``), which is also
the URL a user copies from the address bar. (Making the named view the default instead would open
``/sku?sku=SKU`` under Streamlit's "Page not found" dialog: a default page is served at the root only.)
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.client import Api

# Not "pages": Streamlit would route a new server's first request through that folder itself,
# before this script's st.navigation exists (the sidebar then lists the files, app.py included).
PAGES = Path(__file__).resolve().parent / "views"
# (query parameter, page file, title, icon, url path); the first one named in the URL opens.
VIEWS = (
    ("order", "order.py", "Order", ":material/receipt_long:", "order"),
    ("sku", "sku.py", "SKU", ":material/inventory_2:", "sku"),
    ("promotion", "operations.py", "Operations", ":material/monitor_heart:", "operations"),
    ("", "kpis.py", "KPIs", ":material/insights:", "kpis"),
)


ROOT = "order.py"


def landing(query: dict[str, str]) -> str:
    """The page file a URL's query parameters ask for (the Order page when none does)."""
    for parameter, page, *_ in VIEWS:
        if parameter and query.get(parameter):
            return page
    return ROOT


def main() -> None:
    st.set_page_config(page_title="Milepost", page_icon=":material/local_shipping:", layout="wide")
    pages = {
        page: st.Page(PAGES / page, title=title, icon=icon, url_path=path, default=page == ROOT)
        for _, page, title, icon, path in VIEWS
    }
    navigation = st.navigation({"Milepost": list(pages.values())})
    query = st.query_params.to_dict()
    named = landing(query)
    if navigation is pages[ROOT] and named != ROOT:
        st.switch_page(pages[named], query_params=query)
    with st.sidebar:
        st.caption(f"API: {Api.from_environment().url}")
        st.caption("Answers are cached for 10 s.")
    navigation.run()


if __name__ == "__main__":
    main()
