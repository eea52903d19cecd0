"""The dashboard as a user sees it: ``milepost dashboard`` serving Streamlit, opened by headless Chromium.

Streamlit renders after its websocket connects, so every check waits for the rendered element
(never a fixed sleep). Screenshots go to ``tests/output/`` for a human to look at.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from dashboard.theme import deep_link
from tests.dashboard.estate import PICKUP_CODE, PROMOTION, READ_TOKEN, READY, SKU, STALLED, STALLED_RECEIPT
from tests.support import (
    CHART_DRAWN,
    CHROMIUM,
    CHROMIUM_FLAGS,
    MILEPOST,
    PLOTLY_DRAWN,
    REPO,
    NodeProcess,
    free_port,
    wait_until,
)

OUTPUT = REPO / "tests" / "output"
WAIT_MS = 45_000
# Where the stalled table's link to order W-10024 leads from the Operations page.
TABLE_LINK = urljoin("/operations", deep_link("order", "W-10024"))


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=1).text.strip() == "ok"
    except httpx.HTTPError:
        return False


@contextmanager
def _serve_dashboard(node: NodeProcess, log_dir: Path) -> Iterator[str]:
    """``milepost dashboard`` against ``node``, with its read token; yields the dashboard's URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / "dashboard.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILEPOST_")}
    command = [*MILEPOST, "dashboard", "--api", node.url, "--port", str(port), "--token", READ_TOKEN]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=log_path.parent)
    try:
        wait_until(lambda: process.poll() is not None or _healthy(url), 90, f"the dashboard on {url}", 0.2)
        assert process.poll() is None, f"milepost dashboard exited: {log_path.read_text()}"
        announced = log_path.read_text()
        assert f"dashboard on {url} reading {node.url}" in announced, announced
        assert READ_TOKEN not in announced
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def dashboard(estate_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _serve_dashboard(estate_node, tmp_path_factory.mktemp("dashboard-log")) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: `make test` installs it (Debian's chromium, through "
            "`make system-packages`), or run `apt-get install -y --no-install-recommends chromium`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        # A short TMPDIR: Chromium aborts when its singleton socket path exceeds the Unix limit.
        environment = {**os.environ, "TMPDIR": "/tmp"}
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, env=environment
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    opened = context.new_page()
    yield opened
    context.close()


def _open(page: Page, url: str, charts: int) -> None:
    """Go to ``url`` and wait until ``charts`` charts have drawn their SVG."""
    page.goto(url, wait_until="domcontentloaded")
    if not charts:
        return
    page.wait_for_selector(CHART_DRAWN, timeout=WAIT_MS)
    page.wait_for_function(
        "([selector, n]) => document.querySelectorAll(selector).length >= n",
        arg=[CHART_DRAWN, charts],
        timeout=WAIT_MS,
    )


def _shot(page: Page, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"dashboard-{name}.png"
    page.screenshot(path=str(path))
    return path


def _visible(page: Page, text: str) -> None:
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=WAIT_MS)


@pytest.mark.parametrize(
    ("name", "link", "charts", "words"),
    [
        (
            "order",
            f"/?order={STALLED_RECEIPT}",
            2,
            [f"Order {STALLED}", "not reserved: SLA 10 min", "Inventory service at DC-2 returned errors"],
        ),
        ("sku", f"/?sku={SKU}", 1, ["At 042 the systems disagree by 4 units", "Events of 884-12"]),
        (
            "promotion",
            f"/?promotion={PROMOTION}",
            2,
            ["Still at the old price: 023", "Activation lag per store"],
        ),
        ("kpis", "/kpis", 4, ["Order to ready p50", "Top stores by stalled rate"]),
        ("operations", "/operations", 0, ["Stalled orders", "3 of 3 stalled orders match"]),
        ("order-link", TABLE_LINK, 1, ["Order W-10024", "Nothing is late."]),
        # The URLs the address bar shows once a view is open: what a user copies to a colleague.
        ("sku-address", f"/sku?sku={SKU}", 1, ["At 042 the systems disagree by 4 units"]),
        ("promotion-address", f"/operations?promotion={PROMOTION}", 2, ["Still at the old price: 023"]),
    ],
)
def test_each_view_renders_its_charts_and_answer(
    dashboard: str, page: Page, name: str, link: str, charts: int, words: list[str]
) -> None:
    _open(page, f"{dashboard}{link}", charts)
    for text in words:
        _visible(page, text)
    assert "Traceback" not in page.content()
    assert page.get_by_text("Page not found").count() == 0  # Streamlit's dialog for a path it lacks
    assert _shot(page, name).stat().st_size > 10_000


def test_a_root_deep_link_leaves_the_views_own_url_in_the_address_bar(dashboard: str, page: Page) -> None:
    _open(page, f"{dashboard}/?sku={SKU}", 1)
    page.wait_for_url(f"{dashboard}/sku?sku={SKU}", timeout=WAIT_MS)


def test_operations_tabs_load_on_click_and_keep_their_place_in_the_url(dashboard: str, page: Page) -> None:
    page.goto(f"{dashboard}/operations", wait_until="domcontentloaded")
    _visible(page, "stalled orders match")
    page.get_by_role("tab", name="Ingest health").click()
    _visible(page, "WAL backlog")
    page.wait_for_url("**view=Ingest*", timeout=WAIT_MS)
    page.get_by_role("tab", name="Promotions").click()
    page.wait_for_function(
        "([selector, n]) => document.querySelectorAll(selector).length >= n",
        arg=[CHART_DRAWN, 2],
        timeout=WAIT_MS,
    )
    _visible(page, "Activation lag per store")
    _shot(page, "operations-promotions")


def test_unknown_order_suggests_near_ids_and_a_suggestion_opens_it(dashboard: str, page: Page) -> None:
    page.goto(f"{dashboard}/?order=W-10032", wait_until="domcontentloaded")
    _visible(page, "Order 'W-10032' is not known")
    suggestion = page.get_by_role("button", name=STALLED)
    suggestion.wait_for(state="visible", timeout=WAIT_MS)
    _shot(page, "unknown-order")
    suggestion.click()
    page.wait_for_selector(CHART_DRAWN, timeout=WAIT_MS)
    _visible(page, "not reserved: SLA 10 min")
    assert f"order={STALLED}" in page.url  # the search box is bound to the deep link


def test_a_receipt_pasted_into_the_open_order_page_shows_that_order(dashboard: str, page: Page) -> None:
    """The counter case: the page is open on one order, the next customer's id is pasted and Enter pressed."""
    _open(page, f"{dashboard}/?order={PICKUP_CODE}", 2)
    _visible(page, f"Order {READY}")
    box = page.get_by_label("Order id")
    box.fill(STALLED_RECEIPT)
    box.press("Enter")
    _visible(page, f"found by {STALLED_RECEIPT}")
    _visible(page, "not reserved: SLA 10 min")
    page.wait_for_url(f"**order={STALLED_RECEIPT}*", timeout=WAIT_MS)  # a link to give a colleague
    assert page.get_by_text(f"Order {READY}").count() == 0
    _shot(page, "order-pasted")


def test_the_timeline_follows_its_column_when_the_sidebar_folds_away(dashboard: str, page: Page) -> None:
    _open(page, f"{dashboard}/?order={STALLED_RECEIPT}", 2)
    timeline = f"document.querySelector('{PLOTLY_DRAWN}').getBoundingClientRect().width"
    narrow = page.evaluate(timeline)
    page.get_by_test_id("stSidebarHeader").hover()
    page.get_by_test_id("stSidebarCollapseButton").locator("button").click()
    page.wait_for_function(f"w => {timeline} > w + 150", arg=narrow, timeout=WAIT_MS)


def test_a_chart_whose_library_does_not_load_says_so_and_the_answer_stays(dashboard: str, page: Page) -> None:
    page.route("**/plotly-basic.min.js", lambda route: route.abort())
    page.goto(f"{dashboard}/?order={STALLED_RECEIPT}", wait_until="domcontentloaded")
    _visible(page, "not reserved: SLA 10 min")
    _visible(page, "The chart could not be drawn: app/static/plotly-basic.min.js did not load.")
    assert page.locator(CHART_DRAWN).count() == 0


def test_a_new_servers_first_visit_by_deep_link_gets_the_dashboards_own_navigation(
    estate_node: NodeProcess, page: Page, tmp_path: Path
) -> None:
    """Streamlit routes a fresh server's first request through a ``pages/`` folder beside the entry
    script, if there is one, before ``st.navigation`` exists: the page then ran without the frame."""
    with _serve_dashboard(estate_node, tmp_path) as url:
        _open(page, f"{url}/kpis", 4)
        sidebar = page.get_by_test_id("stSidebar")
        for text in ("Milepost", "Operations", "KPIs", f"API: {estate_node.url}"):
            sidebar.get_by_text(text, exact=True).first.wait_for(state="visible", timeout=WAIT_MS)
        assert "app" not in sidebar.inner_text().split()
