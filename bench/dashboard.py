"""Dashboard benchmark: how fast each page shows its answer in a real browser, beside Streamlit's floor.

``python -m bench.dashboard --size quick|full`` starts ``milepost demo --quick`` (a node, a day of
history, live traffic with faults, the dashboard) and, once the history is in, picks from the
node's API what a user would look up: a stalled order by its POS receipt (or pickup code), a
promotion and a SKU of the demo's estate. One headless Chromium (Debian's, driven by Playwright)
then opens each page ``repeats`` times, each time in a fresh tab of one browser context, and
records, in the page's own clock (``performance.now()``, from navigation start) and through a
``MutationObserver`` (so no polling interval is added to the figure):

- **answer shown**: the first element carrying the looked-up data. Order, SKU and promotion: the
  summary sentence (``stAlert`` with text: where the order is and what is late; which locations'
  systems disagree and by how many units; how far the promotion got); Operations: the
  stalled-orders table (``stDataFrame``); KPIs: the first headline card (``stMetric``).
- **chart drawn**: the first chart's drawing: Plotly's SVG on the order page (``.milepost-plotly
  .main-svg``, drawn by the dashboard's plotly.js bundle), Vega's root group elsewhere
  (``stVegaLiteChart svg.marks g.root``).

**Searching in the open page.** A store manager keeps the dashboard open at the counter and pastes
the next receipt into the search box: the page's JavaScript, Plotly included, is already running.
So the run also opens the order page on one stalled order and then searches other stalled orders,
one after the other, by their POS receipt (or pickup code), timing from the Enter key to the new
order's caption ("found by" the pasted id) and to the redrawn timeline (its SVG changed). Each
search is for an order not looked up before, so none is answered from the dashboard's cache.

Each load is checked untimed afterwards (the page names the right order, SKU or promotion), so a
"not known" banner never counts as an answer.

**The floor.** A page of Streamlit and a chart alone costs time in this browser on this machine
whatever the dashboard does: the websocket, the script run, the React render, the chart library's
bundle. So the run also serves a minimal Streamlit app (``st.title`` and one 3-point chart: Plotly
drawn as the dashboard draws it, through ``theme.chart``, or Vega-Lite with ``?chart=vega``) with the
same ``streamlit run`` flags and static files as ``milepost dashboard``,
and measures it in the same browser: its heading and its chart are the floor of an answer and of a
chart drawn by that library. A page's ``ceiling_ratio`` is its time divided by the floor of its
chart library (as ``bench.correlator`` divides a lookup's latency by a bare primary-key SELECT's):
1.0 would mean the dashboard adds nothing.

The floors are measured first, so Chromium's own start-up lands on a discarded first load.
The first load of every page is discarded from its median (it fetches the page's JavaScript and
the dashboard's first script run imports pandas and Plotly); the order page's first load, the
first visit to the dashboard, is reported on its own. Warm loads follow each other within the
dashboard's 10 s answer cache, so they mostly measure rendering, not the node's API. The demo's
live traffic runs on the same cores throughout, as it would on a node that is being used.
Screenshots of each page's last load go to ``bench/screens/``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import BrowserContext, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from bench.report import BENCH_DIR, Figure, record, show
from dashboard import theme
from dashboard.command import APP, streamlit_command
from simulator.demo import SKUS, STORES, Child
from simulator.estate import build_estate
from tests.support import CHART_DRAWN, CHROMIUM, CHROMIUM_FLAGS, MILEPOST, free_port, wait_until

SIZES = {"quick": 3, "full": 7}  # loads per page; the first of each is cold and left out of the median
SEED = 7
HISTORY_LINE = "the history is in; live traffic starts now"
TARGET = "≤ 2"
SCREENS = BENCH_DIR / "screens"
WAIT_MS = 45_000
CONFIRM_MS = 5_000  # the answer is already shown when this wait starts
ALERT = '[data-testid="stAlert"]'
TABLE = '[data-testid="stDataFrame"]'
METRIC = '[data-testid="stMetric"]'
HEADING = '[data-testid="stHeading"]'
PLOTLY, VEGA = "Plotly", "Vega-Lite"
FLOOR_APP = """\
import streamlit as st

st.title("Floor")
if st.query_params.get("chart") == "vega":
    points = {"values": [{"x": 1, "y": 2}, {"x": 2, "y": 1}, {"x": 3, "y": 3}]}
    encoding = {"x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"}}
    layer = {"data": points, "mark": "point", "encoding": encoding}
    st.vega_lite_chart(spec={"layer": [layer]}, width="stretch")
else:
    import plotly.graph_objects as go

    from dashboard import theme

    theme.chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[2, 1, 3], mode="markers")))
"""
# Records, in the page's clock, when each probe's selector first matches (with text, if asked).
OBSERVER = """\
(probes => {
  const marks = {};
  window.__benchMarks = marks;
  const observer = new MutationObserver(() => {
    for (const [name, selector, needsText] of probes) {
      if (name in marks) continue;
      for (const element of document.querySelectorAll(selector)) {
        const text = (element.textContent || "").trim();
        if (!needsText || text) {
          marks[name] = {ms: performance.now(), text: text.slice(0, 300)};
          break;
        }
      }
    }
    if (Object.keys(marks).length === probes.length) observer.disconnect();
  });
  observer.observe(document, {childList: true, subtree: true, characterData: true});
})(%s);
"""


@dataclass(frozen=True)
class View:
    """A page to load: where, which element is its answer, and a text that proves it is the right one."""

    name: str
    url: str
    answer: str  # CSS selector
    answer_needs_text: bool
    confirm: str  # visible on the page once the right answer is shown
    what: str  # the answer element, in words, for the figure's note
    charted: bool = True  # False: the page opens without a chart (Operations' charts are a tab away)
    library: str = VEGA  # what draws its charts


@dataclass(frozen=True)
class Load:
    answer_s: float
    chart_s: float | None


@dataclass(frozen=True)
class Timings:
    """All loads of one view, the first (cold) one included; ``error`` when a load failed."""

    loads: list[Load]
    error: str = ""

    def warm(self, field: str) -> float | None:
        """The median of ``field`` over the loads after the first (cold) one."""
        return self.median(field, skip=1)

    def median(self, field: str, skip: int = 0) -> float | None:
        """The median of ``field`` over the loads after the first ``skip``; None after a failure."""
        values = [value for load in self.loads[skip:] if (value := getattr(load, field)) is not None]
        return statistics.median(values) if values and not self.error else None


# -- processes ---------------------------------------------------------------------------------


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=1).text.strip() == "ok"
    except httpx.HTTPError:
        return False


def _wait_for(child: Child, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``ready()``; a child that exits or a timeout raises with the child's log tail."""
    with suppress(AssertionError):
        wait_until(lambda: not child.alive() or ready(), timeout, what, 0.2)
    if not child.alive() or not ready():
        state = f"exited with {child.process.returncode}" if not child.alive() else f"not after {timeout:g}s"
        raise RuntimeError(f"{what}: {child.name} {state}; its log ends:\n{child.tail(20)}")


def _descendants(pid: int) -> list[int]:
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with suppress(OSError):
            for child in children.read_text().split():
                found += [int(child), *_descendants(int(child))]
    return found


def _stop(child: Child) -> None:
    """SIGTERM to the child's process group, SIGKILL after a minute; then whatever it left running.

    The demo stops its node and dashboard itself (they run in sessions of their own); only if it
    had to be killed are they still alive, and they are stopped by the ids read beforehand.
    """
    left = _descendants(child.process.pid)
    with suppress(ProcessLookupError):
        os.killpg(child.process.pid, signal.SIGTERM)
    child.stop(timeout=60)
    for pid in left:
        with suppress(ProcessLookupError, AssertionError):
            os.kill(pid, signal.SIGTERM)  # raises unless the demo was killed before it stopped them
            wait_until(partial(_exited, pid), 20, f"process {pid} to exit", 0.2)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _exited(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def _start_demo(tmp: Path) -> tuple[Child, str, str]:
    """``milepost demo --quick`` with its history in; returns it, the node's and the dashboard's URLs."""
    node_port, dashboard_port = free_port(), free_port()
    args = [*MILEPOST, "demo", "--quick", "--no-browser", "--seed", str(SEED)]
    args += [
        "--port",
        str(node_port),
        "--dashboard-port",
        str(dashboard_port),
        "--data-dir",
        str(tmp / "demo"),
    ]
    demo = Child("milepost demo", args, tmp / "demo.log")
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        _wait_for(demo, lambda: HISTORY_LINE in demo.log_path.read_text(errors="replace"), 180, "the history")
        _wait_for(demo, lambda: _healthy(dashboard), 60, f"the dashboard on {dashboard}")
    except BaseException:
        _stop(demo)
        raise
    return demo, f"http://127.0.0.1:{node_port}", dashboard


def _start_floor(tmp: Path) -> tuple[Child, str]:
    """The minimal Streamlit app, run with exactly the flags ``milepost dashboard`` uses."""
    app = tmp / "floor" / "floor.py"
    app.parent.mkdir()
    app.write_text(FLOOR_APP)
    (app.parent / "static").symlink_to(Path(theme.__file__).parent / "static")  # the plotly.js bundle
    port = free_port()
    args = [str(app) if arg == str(APP) else arg for arg in streamlit_command(port, "127.0.0.1")]
    floor = Child("floor streamlit", args, tmp / "floor.log")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(floor, lambda: _healthy(url), 90, f"the floor app on {url}")
    except BaseException:
        _stop(floor)
        raise
    return floor, url


# -- what to look up ---------------------------------------------------------------------------


def _get(api: httpx.Client, path: str, **params: str | int) -> Any:
    answer = api.get(path, params=params)
    answer.raise_for_status()
    return answer.json()


@dataclass(frozen=True)
class Order:
    alias: str
    kind: str
    order_id: str

    def __str__(self) -> str:
        return f"{self.alias} ({self.kind} of order {self.order_id})"


def _pick_orders(api: httpx.Client, count: int) -> list[Order] | None:
    """``count`` orders, stalled ones first, each by its POS receipt (or pickup code); None while the
    node knows fewer with either."""
    picked: dict[str, Order] = {}
    for status, limit in (("stalled", 50), ("all", 500)):
        for item in _get(api, "/api/v1/orders", status=status, limit=limit)["items"]:
            if len(picked) == count:
                return list(picked.values())
            order = _get(api, f"/api/v1/orders/{quote(str(item['order_id']), safe='')}")
            aliases = {alias["kind"]: str(alias["value"]) for alias in order.get("aliases") or []}
            for kind in ("pos_receipt", "pickup_code"):
                if kind in aliases and order["order_id"] not in picked:
                    picked[order["order_id"]] = Order(
                        aliases[kind], f"{kind}, {status}", str(order["order_id"])
                    )
    return list(picked.values()) if len(picked) == count else None


def _pick_promotion(api: httpx.Client) -> str | None:
    """The newest promotion or price change."""
    items = _get(api, "/api/v1/promotions")["items"]
    return str(items[0]["promo_id"]) if items else None


def _pick_sku(api: httpx.Client) -> str | None:
    """A SKU of the demo's estate (same seed) whose systems disagree somewhere, as the store manager
    would look up; else the first one the node knows."""
    known: list[str] = []
    for sku in build_estate(SEED, STORES, SKUS).skus:
        answer = api.get(f"/api/v1/skus/{quote(sku.id, safe='')}")
        if answer.status_code != 200:
            continue
        if any(location.get("spread") for location in answer.json().get("stock") or []):
            return sku.id
        known.append(sku.id)
    return known[0] if known else None


def _views(api_url: str, dashboard: str, floor: str, searches: int) -> tuple[list[View], list[Order], str]:
    """The floor first, then the dashboard's pages (order first); the orders to search for (the
    first is the order page's, then ``searches`` more); and a note on what was looked up.

    The history line means the demo has sent its history, not that the node has stored all of it,
    so what to look up is waited for (a minute at most).
    """
    picks: dict[str, Callable[[httpx.Client], Any]] = {
        "order": partial(_pick_orders, count=searches + 1),
        "SKU": _pick_sku,
        "promotion": _pick_promotion,
    }
    found: dict[str, Any] = {}

    def everything_found() -> bool:
        for what, pick in picks.items():
            if what not in found and (value := pick(api)) is not None:
                found[what] = value
        return len(found) == len(picks)

    with httpx.Client(base_url=api_url, timeout=30) as api, suppress(AssertionError):
        wait_until(everything_found, 60, "what to look up", 1.0)
    if len(found) < len(picks):
        missing = ", ".join(what for what in picks if what not in found)
        raise RuntimeError(f"after a minute, the demo's node still has no {missing} to look up")
    orders: list[Order] = found["order"]
    order = orders[0]
    sku: str = found["SKU"]
    promo_id: str = found["promotion"]
    views = [
        View("floor-plotly", f"{floor}/", HEADING, True, "Floor", "st.title heading", library=PLOTLY),
        View("floor-vega", f"{floor}/?chart=vega", HEADING, True, "Floor", "st.title heading"),
        View(
            "order",
            f"{dashboard}/?order={quote(order.alias)}",
            ALERT,
            True,
            f"found by {order.alias}",  # the canonical id may change as later events link the order
            "summary sentence",
            library=PLOTLY,
        ),
        View(
            "sku",
            f"{dashboard}/?sku={quote(sku)}",
            ALERT,
            True,
            f"Events of {sku}",
            "summary sentence (where the systems disagree, by how much)",
        ),
        View(
            "promotion",
            f"{dashboard}/?promotion={quote(promo_id)}",
            ALERT,
            True,
            f"Promotion {promo_id}",
            "summary sentence",
        ),
        View(
            "operations",
            f"{dashboard}/operations",
            TABLE,
            False,
            "stalled orders match",
            "stalled table (its tab opens first; the promotion charts are timed on the promotion link)",
            charted=False,
        ),
        View("kpis", f"{dashboard}/kpis", METRIC, True, "Order to ready p50", "first headline card"),
    ]
    return views, orders, f"order {order}, SKU {sku}, promotion {promo_id}"


SEARCH_BOX = 'input[aria-label="Order id"]'
CAPTION = '[data-testid="stCaptionContainer"]'
# Armed before a search: marks when Enter is pressed, when a caption names the pasted id, and when
# the first chart's SVG differs from what it showed before (two stalled orders of one store can have
# the same axis labels, so the drawing is compared, not its text).
SEARCH_OBSERVER = """\
([caption, wanted, chart]) => {
  const marks = {};
  window.__benchSearch = marks;
  const before = (document.querySelector(chart) || {}).innerHTML || "";
  document.addEventListener("keydown", event => {
    if (event.key === "Enter" && !("enter" in marks)) marks.enter = performance.now();
  }, true);
  const observer = new MutationObserver(() => {
    if (!("enter" in marks)) return;
    if (!("answer" in marks)) {
      for (const element of document.querySelectorAll(caption)) {
        if ((element.textContent || "").includes(wanted)) { marks.answer = performance.now(); break; }
      }
    }
    const drawn = document.querySelector(chart);
    if (!("chart" in marks) && drawn && drawn.innerHTML !== before) marks.chart = performance.now();
    if ("answer" in marks && "chart" in marks) observer.disconnect();
  });
  observer.observe(document, {childList: true, subtree: true, characterData: true, attributes: true});
}
"""


# -- the browser -------------------------------------------------------------------------------


def _load(context: BrowserContext, view: View, screenshot: Path | None) -> Load:
    """Open ``view`` in a fresh tab; seconds from navigation start to its answer and to its first chart."""
    probes = [["answer", view.answer, view.answer_needs_text]]
    if view.charted:
        probes.append(["chart", CHART_DRAWN, False])
    page = context.new_page()
    try:
        page.add_init_script(script=OBSERVER % json.dumps(probes))
        page.goto(view.url, wait_until="commit", timeout=WAIT_MS)
        page.wait_for_function(
            "n => Object.keys(window.__benchMarks || {}).length === n", arg=len(probes), timeout=WAIT_MS
        )
        marks = page.evaluate("window.__benchMarks")
        # Untimed: the answer is the one asked for, not a banner that the key is unknown.
        page.get_by_text(view.confirm).first.wait_for(state="visible", timeout=CONFIRM_MS)
        if "not known" in marks["answer"]["text"]:
            raise RuntimeError(f"{view.url} answered: {marks['answer']['text']}")
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        chart = marks["chart"]["ms"] / 1000 if view.charted else None
        return Load(marks["answer"]["ms"] / 1000, chart)
    except (PlaywrightError, RuntimeError):
        page.screenshot(path=str(SCREENS / f"{view.name}-failed.png"))
        raise
    finally:
        page.close()


def _loads(context: BrowserContext, view: View, repeats: int) -> Timings:
    """``view`` loaded ``repeats`` times (a screenshot of the last); the first failure ends it."""
    loads: list[Load] = []
    try:
        for attempt in range(repeats):
            shot = SCREENS / f"{view.name}.png" if attempt == repeats - 1 else None
            loads.append(_load(context, view, shot))
    except (PlaywrightError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        picture = SCREENS / f"{view.name}-failed.png"
        return Timings(loads, f"load {len(loads) + 1} of {repeats} failed ({picture.name}): {reason}")
    return Timings(loads)


def _searches(context: BrowserContext, dashboard: str, orders: list[Order]) -> Timings:
    """The order page opened on ``orders[0]``, then each other order searched for in that page."""
    page = context.new_page()
    loads: list[Load] = []
    try:
        page.goto(f"{dashboard}/?order={quote(orders[0].alias)}", wait_until="commit", timeout=WAIT_MS)
        page.locator(CHART_DRAWN).first.wait_for(state="visible", timeout=WAIT_MS)
        page.get_by_text(f"found by {orders[0].alias}").first.wait_for(state="visible", timeout=WAIT_MS)
        for order in orders[1:]:
            wanted = f"found by {order.alias}"
            page.evaluate(SEARCH_OBSERVER, [CAPTION, wanted, CHART_DRAWN])
            page.fill(SEARCH_BOX, order.alias)
            page.press(SEARCH_BOX, "Enter")
            page.wait_for_function(
                "() => ['answer', 'chart'].every(m => m in (window.__benchSearch || {}))", timeout=WAIT_MS
            )
            marks = page.evaluate("window.__benchSearch")
            loads.append(
                Load((marks["answer"] - marks["enter"]) / 1000, (marks["chart"] - marks["enter"]) / 1000)
            )
        page.screenshot(path=str(SCREENS / "order-search.png"))
    except PlaywrightError as exc:
        page.screenshot(path=str(SCREENS / "order-search-failed.png"))
        reason = str(exc).splitlines()[0]
        return Timings(
            loads, f"search {len(loads) + 1} of {len(orders) - 1} failed (order-search-failed.png): {reason}"
        )
    finally:
        page.close()
    return Timings(loads)


def _search_figures(timing: Timings, orders: list[Order]) -> list[Figure]:
    """Median of every search (none is cold: the page was open), answer and chart."""
    how = (
        f"median of {len(timing.loads)} searches in the open order page, from the Enter key,"
        f" each for an order not looked up before (first: {orders[1]})"
        f"; the demo's live traffic ran on the same {os.cpu_count()} cores"
    )
    return [
        Figure(
            "dashboard order: search in the open page, answer shown",
            timing.median("answer_s"),
            "s",
            TARGET,
            timing.error or f"the order's caption naming the pasted id; {how}",
        ),
        Figure(
            "dashboard order: search in the open page, chart redrawn",
            timing.median("chart_s"),
            "s",
            TARGET,
            timing.error or f"the timeline redrawn for the new order; {how}",
        ),
    ]


@contextmanager
def _browser() -> Iterator[BrowserContext]:
    """One headless Debian Chromium and one context (shared HTTP cache) for every load."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    for old in SCREENS.glob("*.png"):
        old.unlink()  # a page that fails this time must not leave last run's picture
    with sync_playwright() as playwright:
        # A short TMPDIR: Chromium aborts when its singleton socket path exceeds the Unix limit.
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, env={**os.environ, "TMPDIR": "/tmp"}
        )
        try:
            yield browser.new_context(viewport={"width": 1400, "height": 2000})
        finally:
            browser.close()


# -- figures -----------------------------------------------------------------------------------


def _ratio(value: float | None, floor: float | None) -> float | None:
    return value / floor if value is not None and floor else None


def _figures(
    view: View, timing: Timings, floors: dict[str, Timings], repeats: int, looked_up: str
) -> list[Figure]:
    """The figures of one view: a floor's heading and chart (``floors`` has none of its library yet),
    or a page's answer and chart with their ratios to its library's floor, and for the order page its
    cold load too."""
    warm = f"median of {repeats - 1} warm loads of {repeats}, from navigation start"
    traffic = f"the demo's live traffic ran on the same {os.cpu_count()} cores"
    answer, chart = timing.warm("answer_s"), timing.warm("chart_s")
    floor = floors.get(view.library)
    if floor is None:
        floors[view.library] = timing
        page = f"st.title and one 3-point {view.library} chart, served with the dashboard's flags"
        note = timing.error or f"{page}; {warm}; {traffic}"
        return [
            Figure(
                f"dashboard floor: minimal Streamlit page, heading ({view.library})",
                answer,
                "s",
                "report",
                note,
            ),
            Figure(
                f"dashboard floor: minimal Streamlit page, chart ({view.library})", chart, "s", "report", note
            ),
        ]
    cached = "most warm loads answered from the dashboard's 10 s cache"
    looked_up = f"; {looked_up}" if view.name == "order" else ""
    figures = [
        Figure(
            f"dashboard {view.name}: answer shown",
            answer,
            "s",
            TARGET,
            timing.error or f"{view.what}; {warm}; {cached}; {traffic}{looked_up}; ratio: / floor heading",
            _ratio(answer, floor.warm("answer_s")),
        ),
    ]
    if view.charted:
        floor_chart = f"floor chart ({view.library})"
        chart_note = f"first chart ({view.library}); {warm}; {cached}; {traffic}; ratio: / {floor_chart}"
        figures.append(
            Figure(
                f"dashboard {view.name}: chart drawn",
                chart,
                "s",
                TARGET,
                timing.error or chart_note,
                _ratio(chart, floor.warm("chart_s")),
            )
        )
    if view.name == "order":
        cold = timing.loads[0] if timing.loads else None
        first = "first visit to the dashboard: its JavaScript fetched, its first script run, the API asked"
        note = f"{first}; chart drawn at {cold.chart_s or 0:.3g} s; {traffic}" if cold else timing.error
        value = cold.answer_s if cold else None
        figures.append(Figure("dashboard order: cold load, answer shown", value, "s", "report", note))
    return figures


def run(size: str) -> list[Figure]:
    if not CHROMIUM.exists():
        raise SystemExit(f"Chromium is missing at {CHROMIUM}: `make system-packages` installs Debian's.")
    repeats = SIZES[size]
    started = time.monotonic()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="milepost-bench-dashboard-") as name, ExitStack() as running:
        tmp = Path(name)
        floor_app, floor_url = _start_floor(tmp)  # starts while the demo loads its history
        running.callback(_stop, floor_app)
        demo, api_url, dashboard = _start_demo(tmp)
        running.callback(_stop, demo)
        views, orders, looked_up = _views(api_url, dashboard, floor_url, repeats)
        print(f"  demo ready after {time.monotonic() - started:.0f} s; looking up {looked_up}", flush=True)
        floors: dict[str, Timings] = {}
        with _browser() as context:
            for view in views:
                timing = _loads(context, view, repeats)
                for figure in _figures(view, timing, floors, repeats, looked_up):
                    show(figure)
                    figures.append(figure)
            for figure in _search_figures(_searches(context, dashboard, orders), orders):
                show(figure)
                figures.append(figure)
    print(f"  {time.monotonic() - started:.0f} s in all; screenshots in {SCREENS}", flush=True)
    return figures


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # so the demo, the floor app and the browser are stopped on the way out


def main() -> None:
    signal.signal(signal.SIGTERM, _exit)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    args = parser.parse_args()
    record(run(args.size), args.size)


if __name__ == "__main__":
    main()
