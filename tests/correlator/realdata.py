"""The shared real data sets as CloudEvents, and what Milepost should make of them, from the data alone.

Both sets are read in place, read-only, from ``../shared/data`` (see its README):

- SAP SD document flow (VBFA): each row links a preceding document (VBELV) to a following one
  (VBELN). A sales order's flow is every document reachable from it along those links; the
  replay sends one ``retail.order.accepted`` per sales order, one ``retail.order.alias`` per
  flow row (following document -> preceding document, so chains resolve only transitively) and
  one milestone event per following document, naming that document, never the sales order.
- UCI Online Retail: invoice lines of a set of SKUs; an invoice is a ``retail.order.accepted``
  with its lines, a cancellation invoice (``C...``) a ``retail.order.returned``.

Nothing here imports Milepost: the expectations come from the CSV and parquet files only.
"""

from __future__ import annotations

import random
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import pandas as pd

from tests.support import SHARED_DATA

VBFA_ZIP = SHARED_DATA / "sap-vbfa" / "VBFA.zip"
ONLINE_RETAIL = SHARED_DATA / "online-retail" / "online_retail.parquet"
SAP_SOURCE = "sap/vbfa"
RETAIL_SOURCE = "uci/online-retail"

SALES_ORDER = "C"
GOODS_MOVEMENT = "R"
INVOICE = "M"
CREDIT_MEMO = "O"
RETURNS = frozenset({"H", "T"})  # returns order, returns delivery
GOODS_ISSUE_MOVEMENT = "601"
# Readable alias kinds for the document categories (VBTYP) a retail reader meets; others keep the code.
KIND_OF_CATEGORY = {
    "C": "sales_order",
    "J": "delivery",
    "Q": "picking",
    "R": "goods_movement",
    "M": "invoice",
    "N": "invoice_cancellation",
    "O": "credit_memo",
    "P": "debit_memo",
    "H": "returns_order",
    "T": "returns_delivery",
    "U": "pro_forma_invoice",
    "K": "credit_memo_request",
    "L": "debit_memo_request",
}


def alias_kind(category: str) -> str:
    return KIND_OF_CATEGORY.get(category, f"sap_vbtyp_{category}")


def cloud_event(
    event_type: str, source: str, event_id: str, time: str, data: dict[str, Any]
) -> dict[str, Any]:
    """A structured-mode CloudEvent as it goes into a batch."""
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": source,
        "id": event_id,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }


# --------------------------------------------------------------------------------------- SAP VBFA


def load_vbfa() -> pd.DataFrame:
    """Every VBFA row as text, with ``row`` (its position) and ``time`` (ERDAT+ERZET, RFC 3339 or None)."""
    with zipfile.ZipFile(VBFA_ZIP) as archive:
        (name,) = archive.namelist()
        with archive.open(name) as handle:
            frame = pd.read_csv(handle, dtype=str, keep_default_na=False)
    frame["row"] = range(len(frame))
    moment = pd.to_datetime(frame["ERDAT"] + frame["ERZET"], format="%Y%m%d%H%M%S", errors="coerce", utc=True)
    frame["time"] = moment.dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(moment.notna(), None)
    return frame


@dataclass(frozen=True)
class Milestone:
    """One milestone event the replay sends for a document, and the milestone it must become."""

    event_type: str
    milestone: str | None  # None: linked to the timeline as an event (retail.finance.posted)
    document: str
    event_id: str
    time: str


class Row(NamedTuple):
    """One VBFA row: the fields the replay reads, ``row`` its position, ``time`` ERDAT+ERZET."""

    row: int
    preceding: str  # VBELV
    item: str  # POSNV, the preceding document's item
    following: str  # VBELN
    category: str  # VBTYP_N, the following document's category
    quantity: str  # RFMNG
    material: str  # MATNR
    movement: str  # BWART, the goods movement type
    time: str | None


@dataclass(frozen=True)
class SalesOrderFlow:
    order: str
    rows: tuple[Row, ...]  # every row whose preceding document is the order or one of its documents
    documents: frozenset[str]  # the reachable following documents (the order itself excluded)
    depth: int  # documents on the longest chain after the order (order -> delivery -> invoice: 2)

    @cached_property
    def categories(self) -> dict[str, frozenset[str]]:
        """Per document, the categories (VBTYP_N) the rows naming it give it (one per item, usually one)."""
        found: dict[str, set[str]] = defaultdict(set)
        for row in self.rows:
            found[row.following].add(row.category)
        return {document: frozenset(categories) for document, categories in found.items()}

    @cached_property
    def accepted_time(self) -> str:
        """The first appearance of the sales order: its earliest row as a preceding document."""
        return min(str(row.time) for row in self.rows if row.preceding == self.order)

    @cached_property
    def milestones(self) -> list[Milestone]:
        """The milestone events of the flow's documents, by the README's mapping.

        goods issue (R, movement 601) -> fulfilled; invoice (M) -> finance posted (a linked event);
        returns order or delivery (H, T) -> returned; credit memo (O) -> refunded. Each names the
        document itself; its time is the earliest row naming the document.
        """
        naming: dict[str, list[Row]] = defaultdict(list)
        for row in self.rows:
            naming[row.following].append(row)
        out = []
        for document, rows in sorted(naming.items()):
            time = min(str(row.time) for row in rows)
            categories = {row.category for row in rows}
            movements = {row.movement for row in rows if row.category == GOODS_MOVEMENT}
            if GOODS_ISSUE_MOVEMENT in movements:
                out.append(Milestone("retail.order.fulfilled", "fulfilled", document, f"gi-{document}", time))
            if INVOICE in categories:
                out.append(Milestone("retail.finance.posted", None, document, f"invoice-{document}", time))
            if categories & RETURNS:
                out.append(
                    Milestone("retail.order.returned", "returned", document, f"return-{document}", time)
                )
            if CREDIT_MEMO in categories:
                out.append(
                    Milestone("retail.refund.issued", "refunded", document, f"credit-{document}", time)
                )
        return out

    @cached_property
    def lines(self) -> list[dict[str, Any]]:
        """Order lines: per order item, the material and quantity of its first row that names both.

        Only whole quantities of at least one unit make a line (the contract's ``qty``).
        """
        first: dict[str, Row] = {}
        for row in sorted(self.rows, key=lambda r: (str(r.time), r.row)):
            if row.preceding == self.order and row.material and row.item not in first:
                first[row.item] = row
        lines = []
        for _, row in sorted(first.items()):
            quantity = float(row.quantity or 0)
            if quantity >= 1 and quantity.is_integer():
                lines.append({"sku": row.material, "qty": int(quantity)})
        return lines

    def events(self) -> list[dict[str, Any]]:
        """The flow as CloudEvents: accepted, one alias per row, one event per milestone."""
        accepted: dict[str, Any] = {"order_id": self.order, "channel": "web", "fulfillment": "ship"}
        if self.lines:
            accepted["lines"] = self.lines
        out = [
            cloud_event(
                "retail.order.accepted", SAP_SOURCE, f"order-{self.order}", self.accepted_time, accepted
            )
        ]
        for row in self.rows:
            data = {"order_id": row.preceding, "kind": alias_kind(row.category), "value": row.following}
            out.append(cloud_event("retail.order.alias", SAP_SOURCE, f"flow-{row.row}", str(row.time), data))
        for milestone in self.milestones:
            data = {"order_id": milestone.document}
            if milestone.event_type == "retail.finance.posted":
                data |= {"erp_doc": milestone.document, "kind": "sale"}
            elif milestone.event_type == "retail.order.returned":
                data["return_id"] = milestone.document
            out.append(
                cloud_event(milestone.event_type, SAP_SOURCE, milestone.event_id, milestone.time, data)
            )
        return out


class DocumentFlow:
    """The VBFA links as a graph: preceding document -> following documents."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.following: dict[str, set[str]] = defaultdict(set)
        for preceding, following in zip(frame["VBELV"], frame["VBELN"], strict=True):
            self.following[preceding].add(following)
        self._positions: dict[str, Any] = frame.groupby("VBELV").indices  # preceding document -> rows
        columns = ["row", "VBELV", "POSNV", "VBELN", "VBTYP_N", "RFMNG", "MATNR", "BWART", "time"]
        self._columns = [frame[column].tolist() for column in columns]

    def rows_of(self, preceding: str) -> list[Row]:
        return [Row(*(column[p] for column in self._columns)) for p in self._positions.get(preceding, ())]

    def sales_orders(self) -> list[str]:
        """Sales orders that start a flow: category C as a preceding document, never a following one."""
        orders = set(self.frame.loc[self.frame["VBTYP_V"] == SALES_ORDER, "VBELV"])
        return sorted(orders - set(self.frame["VBELN"]))

    @cached_property
    def reach(self) -> dict[str, set[str]]:
        """Every flow-starting sales order's reachable documents, itself included."""
        return {order: self.reachable(order) for order in self.sales_orders()}

    def reachable(self, order: str) -> set[str]:
        seen = {order}
        stack = [order]
        while stack:
            for following in self.following.get(stack.pop(), ()):
                if following not in seen:
                    seen.add(following)
                    stack.append(following)
        return seen

    def depth(self, order: str) -> int:
        """Documents on the longest chain after ``order`` (a link back onto the path is not followed)."""
        longest: dict[str, int] = {}

        def walk(document: str, path: frozenset[str]) -> int:
            if document in longest:
                return longest[document]
            best = 0
            for following in self.following.get(document, ()):
                if following not in path:
                    best = max(best, 1 + walk(following, path | {following}))
            longest[document] = best
            return best

        return walk(order, frozenset({order}))

    def flow(self, order: str) -> SalesOrderFlow:
        documents = self.reachable(order)
        rows = tuple(sorted((r for d in documents for r in self.rows_of(d)), key=lambda r: r.row))
        return SalesOrderFlow(order, rows, frozenset(documents - {order}), self.depth(order))


def sample_flows(flows: DocumentFlow, count: int, seed: int, max_documents: int = 40) -> list[SalesOrderFlow]:
    """A deterministic sample of sales orders whose flows share no document number.

    Flows with returns or credit memos come first (they are rare), then the deepest chains,
    then a seeded shuffle of the rest; a flow is taken when it is dated throughout, has at most
    ``max_documents`` documents and none of its numbers (order included) is in a flow already
    taken. Document numbers repeat in VBFA (a picking record's number is its date, transfer
    orders and material documents have number ranges of their own), so two flows sharing a
    number would be one alias group in Milepost: this sample has none, and the test says so.
    """
    orders = flows.sales_orders()
    shuffled = list(orders)
    random.Random(seed).shuffle(shuffled)
    special = set(flows.frame.loc[flows.frame["VBTYP_N"].isin(RETURNS | {CREDIT_MEMO}), "VBELN"])
    reach = flows.reach
    with_returns = [o for o in shuffled if reach[o] & special][: count // 6]
    deepest = sorted(orders, key=lambda o: (-flows.depth(o), o))[: count // 6]
    taken: list[SalesOrderFlow] = []
    used: set[str] = set()
    for order in dict.fromkeys([*with_returns, *deepest, *shuffled]):
        if len(taken) == count:
            break
        documents = reach[order]
        if len(documents) > max_documents + 1 or documents & used:
            continue
        flow = flows.flow(order)
        if any(row.time is None for row in flow.rows):
            continue
        taken.append(flow)
        used |= documents
    return taken


# ---------------------------------------------------------------------------------- Online Retail


def load_online_retail() -> pd.DataFrame:
    frame = pd.read_parquet(ONLINE_RETAIL)
    frame["cancellation"] = frame["InvoiceNo"].str.startswith("C")
    return frame


def replayed_lines(frame: pd.DataFrame) -> pd.DataFrame:
    """The lines that are sales (positive quantities of ordinary invoices) or cancellations (C invoices).

    Ordinary invoices also hold zero and negative lines (stock write-offs with no customer):
    they are neither sales nor returns and are not replayed (the contract wants qty >= 1 anyway).
    """
    return frame[frame["cancellation"] | (frame["Quantity"] > 0)]


def pick_skus(frame: pd.DataFrame, count: int = 20, most_lines: int = 120) -> list[str]:
    """SKUs with both sales and cancellations, evenly spread over the sorted candidates.

    Candidates are product codes (digits, maybe a letter: not POST, M, DOT...), with at least
    three cancellation lines and at most ``most_lines`` replayed lines (runtime); the candidate
    with the most same-invoice repeats of one SKU is always included.
    """
    lines = replayed_lines(frame)
    product = lines[lines["StockCode"].str.fullmatch(r"\d{5}[A-Za-z]?")]
    per_sku = product.groupby("StockCode").agg(
        lines=("InvoiceNo", "size"), cancellations=("cancellation", "sum")
    )
    candidates = per_sku[(per_sku["cancellations"] >= 3) & (per_sku["lines"] <= most_lines)].index
    candidates = sorted(str(sku) for sku in candidates)
    step = len(candidates) / count
    chosen = {candidates[int(i * step)] for i in range(count)}
    subset = product[product["StockCode"].isin(candidates)]
    repeats = subset.groupby(["InvoiceNo", "StockCode"]).size()
    repeated = repeats[repeats > 1].reset_index()["StockCode"]
    if len(repeated) and not chosen & set(repeated):
        chosen = set(sorted(chosen)[1:]) | {str(Counter(repeated).most_common(1)[0][0])}
    return sorted(chosen)


def retail_events(frame: pd.DataFrame, skus: Iterable[str]) -> list[dict[str, Any]]:
    """One event per invoice holding the SKUs' lines, each line as recorded (a SKU twice is two lines)."""
    lines = replayed_lines(frame)
    lines = lines[lines["StockCode"].isin(set(skus))]
    out = []
    for invoice, group in lines.groupby("InvoiceNo", sort=True):
        (country,) = set(group["Country"])
        time = group["InvoiceDate"].min().strftime("%Y-%m-%dT%H:%M:%SZ")  # the data's UK time, taken as UTC
        items = [
            {"sku": str(sku), "qty": abs(int(qty)), "unit_price": float(price)}
            for sku, qty, price in zip(group["StockCode"], group["Quantity"], group["UnitPrice"], strict=True)
        ]
        if str(invoice).startswith("C"):
            data = {"order_id": str(invoice), "store_id": country, "lines": items}
            out.append(cloud_event("retail.order.returned", RETAIL_SOURCE, str(invoice), time, data))
        else:
            data = {
                "order_id": str(invoice),
                "channel": "web",
                "store_id": country,
                "currency": "GBP",
                "lines": items,
            }
            out.append(cloud_event("retail.order.accepted", RETAIL_SOURCE, str(invoice), time, data))
    return out


def retail_expectations(frame: pd.DataFrame, skus: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per SKU, by pandas alone: ``totals`` {country: (sold, returned)}, ``lines`` (replayed line
    count) and ``invoices`` (lines per invoice number: a SKU twice on one invoice counts twice)."""
    lines = replayed_lines(frame)
    lines = lines[lines["StockCode"].isin(set(skus))]
    out: dict[str, dict[str, Any]] = {}
    for sku, group in lines.groupby("StockCode"):
        totals = {}
        for country, at in group.groupby("Country"):
            sold = int(at.loc[~at["cancellation"], "Quantity"].sum())
            returned = int(-at.loc[at["cancellation"], "Quantity"].sum())
            totals[str(country)] = (sold, returned)
        invoices = Counter(str(invoice) for invoice in group["InvoiceNo"])
        out[str(sku)] = {"totals": totals, "lines": len(group), "invoices": invoices}
    return out


def conflicting_pairs(
    flows: DocumentFlow, count: int, exclude: set[str], max_documents: int = 30
) -> list[tuple[SalesOrderFlow, SalesOrderFlow]]:
    """Pairs of sales orders whose flows share documents (a transfer order, a delivery...).

    No third sales order reaches any document of a pair, pairs share nothing with each other
    or with ``exclude``, and each pair has at most ``max_documents`` numbers; taken in document
    number order.
    """
    claimed: dict[str, set[str]] = defaultdict(set)
    for order, documents in flows.reach.items():
        for document in documents:
            claimed[document].add(order)
    pairs: list[tuple[SalesOrderFlow, SalesOrderFlow]] = []
    used = set(exclude)
    for orders in (claimed[document] for document in sorted(claimed)):
        if len(pairs) == count:
            break
        if len(orders) != 2:
            continue
        first, second = sorted(orders)
        union = flows.reach[first] | flows.reach[second]
        if len(union) > max_documents or union & used or any(claimed[d] - orders for d in union):
            continue
        pair = (flows.flow(first), flows.flow(second))
        if any(row.time is None for flow in pair for row in flow.rows):
            continue
        pairs.append(pair)
        used |= union
    return pairs
