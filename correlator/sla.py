"""SLA rules (``from → to within D``, optionally scoped by channel, fulfillment and store).

Rules come from the ``sla`` config list (which replaces the defaults) and are checked at start.
Python verdicts (``correlator.verdicts.stall``) and the SQL built here (``stalled_sql``,
``stall_columns_sql``) share one definition of "stalled", so a single order's page and a list of
millions of orders agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from correlator.model import CANCELLED, CHANNELS, FULFILLMENTS, LIFECYCLE, RANK
from milepost.config import ConfigError, parse_duration

_RULE_KEYS = ("from", "to", "within", "when")
_SCOPES: dict[str, tuple[str, ...] | None] = {
    "channel": CHANNELS,
    "fulfillment": FULFILLMENTS,
    "store_id": None,  # any store id
}
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SlaError(ConfigError):
    """An ``sla`` rule in the configuration has a bad key or value."""


@dataclass(frozen=True)
class SlaRule:
    """Once an order reaches ``from_``, it must reach ``to`` (or beyond) within ``within_s`` seconds.

    ``when`` limits the rule to orders whose ``channel`` / ``fulfillment`` / ``store_id`` is one
    of the listed values; an empty ``when`` applies to every order.
    """

    from_: str
    to: str
    within_s: float
    when: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", MappingProxyType(dict(self.when)))
        if not self.name:
            object.__setattr__(self, "name", _rule_name(self.from_, self.to, self.within_s, self.when))

    @property
    def within_us(self) -> int:
        return round(self.within_s * 1_000_000)

    def matches(self, channel: str, fulfillment: str, store_id: str) -> bool:
        """Whether an order with these attributes is in the rule's scope."""
        values = {"channel": channel, "fulfillment": fulfillment, "store_id": store_id}
        return all(values[key] in allowed for key, allowed in self.when.items())


def _duration_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _rule_name(from_: str, to: str, within_s: float, when: Mapping[str, tuple[str, ...]]) -> str:
    name = f"{from_}→{to} within {_duration_text(within_s)}"
    if when:
        scope = ", ".join(f"{key}={'|'.join(values)}" for key, values in sorted(when.items()))
        name += f" when {scope}"
    return name


DEFAULT_SLA: tuple[SlaRule, ...] = (
    SlaRule("accepted", "paid", 15 * 60),
    SlaRule("paid", "reserved", 10 * 60),
    SlaRule("reserved", "ready", 2 * 3600),
    SlaRule("ready", "fulfilled", 3 * 86400),
    SlaRule("returned", "refunded", 86400),
    SlaRule("fulfilled", "reconciled", 86400),
    SlaRule("refunded", "reconciled", 86400),
)


def parse_sla(raw: Sequence[Mapping[str, Any]] | None) -> tuple[SlaRule, ...]:
    """The rules of the ``sla`` config list; ``None`` gives ``DEFAULT_SLA``, a list replaces it.

    An empty list therefore turns stall detection off. Raises ``SlaError`` (one sentence naming
    ``sla[i].key`` and the value) for anything that is not a valid rule.
    """
    if raw is None:
        return DEFAULT_SLA
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise SlaError(f"Config 'sla' has value '{raw}'. Must be a list of rules.")
    return tuple(_parse_rule(index, item) for index, item in enumerate(raw))


def _parse_rule(index: int, item: Any) -> SlaRule:
    where = f"sla[{index}]"
    if not isinstance(item, Mapping):
        raise SlaError(f"Config '{where}' has value '{item}'. Must be a mapping with from, to and within.")
    for key, value in item.items():
        if key not in _RULE_KEYS:
            raise SlaError(
                f"Config '{where}.{key}' has value '{value}'. Not a known key; use from, to, within, when."
            )
    from_ = _milestone(item, where, "from")
    to = _milestone(item, where, "to")
    if RANK[to] <= RANK[from_]:
        raise SlaError(f"Config '{where}.to' has value '{to}'. Must be a milestone ranked after '{from_}'.")
    if "within" not in item:
        raise SlaError(f"Config '{where}.within' is missing. Give a duration such as 15m or 2h.")
    try:
        within_s = parse_duration(f"{where}.within", item["within"])
    except ConfigError as exc:
        raise SlaError(str(exc)) from None
    return SlaRule(from_, to, within_s, _when(item.get("when"), where))


def _milestone(item: Mapping[str, Any], where: str, key: str) -> str:
    if key not in item:
        raise SlaError(f"Config '{where}.{key}' is missing. Give a milestone: {', '.join(LIFECYCLE)}.")
    value = item[key]
    if value not in LIFECYCLE:
        # cancelled closes an order, so it can be neither the start nor the goal of an SLA.
        raise SlaError(
            f"Config '{where}.{key}' has value '{value}'. "
            f"Must be a lifecycle milestone: {', '.join(LIFECYCLE)}."
        )
    return str(value)


def _when(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SlaError(
            f"Config '{where}.when' has value '{raw}'. Must be a mapping such as {{fulfillment: bopis}}."
        )
    scope: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        if key not in _SCOPES:
            raise SlaError(
                f"Config '{where}.when.{key}' has value '{value}'. "
                "Not a known key; use channel, fulfillment, store_id."
            )
        scope[key] = _scope_values(f"{where}.when.{key}", value, _SCOPES[key])
    return scope


def _scope_values(where: str, value: Any, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    # Only strings: YAML reads an unquoted store id such as 042 as the number 34.
    if not values or not all(isinstance(v, str) and v for v in values):
        raise SlaError(
            f"Config '{where}' has value '{value}'. Must be a string or a list of strings (quote ids)."
        )
    for v in values:
        if allowed is not None and v not in allowed:
            raise SlaError(f"Config '{where}' has value '{v}'. Must be one of {', '.join(allowed)}.")
    return tuple(values)


def _precedence(indexed: tuple[int, SlaRule]) -> tuple[int, int, int]:
    """Most specific first; then the strictest; then the first configured."""
    index, rule = indexed
    return (-len(rule.when), rule.within_us, index)


def _candidates(rules: Sequence[SlaRule]) -> dict[tuple[str, str], list[tuple[int, SlaRule]]]:
    """(index, rule) per (from, to) pair, in precedence order: the first that matches an order applies."""
    pairs: dict[tuple[str, str], list[tuple[int, SlaRule]]] = {}
    for indexed in enumerate(rules):
        pairs.setdefault((indexed[1].from_, indexed[1].to), []).append(indexed)
    return {pair: sorted(group, key=_precedence) for pair, group in pairs.items()}


def applicable(rules: Sequence[SlaRule], channel: str, fulfillment: str, store_id: str) -> list[SlaRule]:
    """The rules that apply to an order: per (from, to) pair, the most specific matching rule.

    Specificity is the number of ``when`` keys; between equally specific matches the shortest
    ``within`` wins (then the first configured). The result keeps the configuration's order.
    """
    chosen: list[int] = []
    for group in _candidates(rules).values():
        matching = [index for index, rule in group if rule.matches(channel, fulfillment, store_id)]
        chosen += matching[:1]
    return [rules[index] for index in sorted(chosen)]


# --- SQL over an order-summary row -------------------------------------------------------------
# Columns: channel, fulfillment, store_id, and first_<m> / last_<m> for every milestone m,
# Nullable(DateTime64(6, 'UTC')), NULL when never reached.


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _scope_sql(rule: SlaRule) -> str:
    terms = [
        f"{key} IN ({', '.join(_literal(v) for v in values)})" for key, values in sorted(rule.when.items())
    ]
    return " AND ".join(terms) or "1"


def _within_sql(group: Sequence[tuple[int, SlaRule]]) -> str:
    """Microseconds allowed for this order by the pair's applicable rule, NULL when none applies."""
    parts: list[str] = []
    for _, rule in group:
        parts += [_scope_sql(rule), str(rule.within_us)]
    return f"CAST(multiIf({', '.join(parts)}, NULL) AS Nullable(Int64))"


def _micros(column: str) -> str:
    return f"toUnixTimestamp64Micro({column})"


def _pair_due_sql(pair: tuple[str, str], group: Sequence[tuple[int, SlaRule]]) -> str:
    """Microseconds when the pair's ``to`` is due, NULL when it is reached (or beyond) or no rule of
    the pair applies to the order."""
    from_, to = pair
    start = f"first_{from_}"
    reached = " OR ".join(f"ifNull(last_{m} >= {start}, 0)" for m in LIFECYCLE if RANK[m] >= RANK[to])
    return f"if({reached}, NULL, {_micros(start)} + {_within_sql(group)})"


def _pair_sql(pair: tuple[str, str], group: Sequence[tuple[int, SlaRule]], now: str) -> tuple[str, str]:
    """(stalled 0/1, due in microseconds or NULL) of one (from, to) pair."""
    due = _pair_due_sql(pair, group)
    stalled = f"ifNull(first_{CANCELLED} IS NULL AND {_micros(now)} > ({due}), 0)"
    return stalled, due


def _now(now_param: str) -> str:
    if not _PARAM.match(now_param):
        raise ValueError(f"Parameter name '{now_param}' is not an identifier.")
    return f"{{{now_param}:DateTime64(6, 'UTC')}}"


def stall_due_sql(rules: Sequence[SlaRule]) -> str:
    """A ClickHouse expression (``Nullable(Int64)``, microseconds): when the order-summary row becomes
    stalled unless a milestone arrives first, NULL when it never will (cancelled, or every step
    that has a rule is reached).

    Stalled at ``now`` is exactly ``due < now``: a pair is stalled once now passes its due, and
    its due does not depend on now. So lists, KPIs and alerts keep this per row
    (``order_summary.stall_due_us``, see ``correlator.summary.keep_stall_due``) instead of
    evaluating every rule over millions of rows on each read.
    """
    dues = [_pair_due_sql(pair, group) for pair, group in _candidates(rules).items()]
    if not dues:
        return "CAST(NULL AS Nullable(Int64))"
    pending = f"arrayFilter(x -> x IS NOT NULL, [{', '.join(dues)}])"
    return f"if(first_{CANCELLED} IS NOT NULL OR empty({pending}), NULL, arrayMin({pending}))"


def stalled_sql(rules: Sequence[SlaRule], now_param: str) -> str:
    """A ClickHouse expression, 1 when the order-summary row is stalled at ``{now_param}``, else 0.

    Same semantics as ``correlator.verdicts.stall``: per-scope precedence as in ``applicable``,
    cancelled orders never stalled. ``now_param`` names a ``DateTime64(6, 'UTC')`` query parameter.
    Over ``order_summary`` itself, ``stalled_now_sql`` reads the stored due instead.
    """
    return f"toUInt8(ifNull(({stall_due_sql(rules)}) < {_micros(_now(now_param))}, 0))"


def stalled_now_sql(now_param: str, due_column: str = "stall_due_us") -> str:
    """``stalled_sql`` over a column holding ``stall_due_sql`` (``order_summary.stall_due_us``)."""
    return f"toUInt8(ifNull({due_column} < {_micros(_now(now_param))}, 0))"


def stall_columns_sql(rules: Sequence[SlaRule], now_param: str) -> str:
    """SELECT expressions ``stalled_after``, ``stalled_expected`` (Nullable(String)) and ``stalled_due``
    (Nullable(DateTime64(6, 'UTC'))) of the stall ``correlator.verdicts.stall`` would choose: the
    flagged rule whose ``from`` is ranked furthest, then the earliest due, then the nearest ``to``.
    All three are NULL when the order is not stalled.
    """
    now = _now(now_param)
    items = []
    for pair, group in _candidates(rules).items():
        stalled, due = _pair_sql(pair, group, now)
        items.append(
            f"({stalled}, {-RANK[pair[0]]}, ifNull({due}, 0), {RANK[pair[1]]}, "
            f"{_literal(pair[0])}, {_literal(pair[1])})"
        )
    if not items:
        return (
            "CAST(NULL AS Nullable(String)) AS stalled_after, "
            "CAST(NULL AS Nullable(String)) AS stalled_expected, "
            "CAST(NULL AS Nullable(DateTime64(6, 'UTC'))) AS stalled_due"
        )
    flagged = f"arraySort(x -> (x.2, x.3, x.4), arrayFilter(x -> x.1 = 1, [{', '.join(items)}]))"

    def pick(element: int) -> str:
        return f"if(empty({flagged}), NULL, tupleElement(arrayElement({flagged}, 1), {element}))"

    return (
        f"{pick(5)} AS stalled_after, {pick(6)} AS stalled_expected, "
        f"fromUnixTimestamp64Micro({pick(3)}, 'UTC') AS stalled_due"
    )
