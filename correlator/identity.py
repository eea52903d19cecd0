"""Which ids are one order: connected groups of the alias graph, rooted at the accepted order id.

Aliases arrive from many systems and in any order, so identity is resolved from the
stored links each time a group changes rather than kept in memory. A group with one
accepted order takes that order's id as canonical; a group with none takes the id seen
first; a group joining two accepted orders is split by nearest order, and the aliases
that link them are reported, never merged. Directed cycles (A is an alias of B, B of A)
are reported too; the walk keeps a visited set, so nothing ever loops.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import NamedTuple

import pyarrow as pa
from clickhouse_connect.driver.client import Client


class Group(NamedTuple):
    canonical: str
    members: tuple[str, ...]
    issues: tuple[str, ...]
    unowned: tuple[str, ...] = ()  # keys of the component that no order owns (contested aliases)


class KeyTable:
    """A Memory table holding a set of keys, so queries filter by ``IN (SELECT key FROM ...)``.

    Large key sets never travel inside the SQL text (ClickHouse caps the query size).
    """

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name
        client.command(f"DROP TABLE IF EXISTS {name}")
        client.command(f"CREATE TABLE {name} (key String) ENGINE = Memory")

    def fill(self, keys: Iterable[str]) -> None:
        self.client.command(f"TRUNCATE TABLE {self.name}")
        column = pa.array(list(keys), pa.string())
        if len(column):
            self.client.insert_arrow(self.name, pa.table({"key": column}))

    @property
    def subquery(self) -> str:
        return f"(SELECT key FROM {self.name})"


class Identity:
    def __init__(self, client: Client, keys: KeyTable, max_hops: int = 16, max_keys: int = 5000) -> None:
        self.client = client
        self.keys = keys
        self.max_hops = max_hops
        self.max_keys = max_keys

    def groups(self, start: Iterable[str]) -> list[Group]:
        """The groups containing ``start`` keys, each with its canonical id, members and issues."""
        edges, unread = self._walk(set(start))
        nodes = {node for edge in edges for node in edge[:2]} | set(start)
        facts = self._facts(nodes)
        components = _components(nodes, edges)
        # Each component's own edges, found once: scanning every edge per component is
        # quadratic, and one batch can touch tens of thousands of orders.
        where = {node: index for index, component in enumerate(components) for node in component}
        edges_of: list[set[tuple[str, str]]] = [set() for _ in components]
        for edge in edges:
            edges_of[where[edge[0]]].add(edge)
        groups: list[Group] = []
        for component, inner in zip(components, edges_of, strict=True):
            groups.extend(self._resolve(component, inner, facts, not unread.isdisjoint(component)))
        return groups

    def _walk(self, start: set[str]) -> tuple[set[tuple[str, str]], set[str]]:
        """Alias edges (alias, order_key) reachable from ``start`` in either direction, and the
        keys found but not followed because the walk reached its limits.

        The key limit grows with ``start``: one batch touches thousands of small groups, which
        must all be read whole, while a value shared by every order (a payment reference
        "N/A", say) must not make each batch read the whole store.
        """
        visited: set[str] = set()
        frontier = set(start)
        edges: set[tuple[str, str]] = set()
        limit = self.max_keys + _KEYS_PER_START * len(start)
        for _ in range(self.max_hops):
            if not frontier:
                return edges, frontier
            visited |= frontier
            self.keys.fill(frontier)
            rows = self.client.query(
                f"SELECT alias, order_key FROM order_links WHERE alias IN {self.keys.subquery} "
                "UNION ALL "
                f"SELECT alias, order_key FROM order_links_reverse WHERE order_key IN {self.keys.subquery}"
            ).result_rows
            found = {(str(alias), str(order_key)) for alias, order_key in rows}
            edges |= found
            frontier = {node for edge in found for node in edge} - visited
            if len(visited) + len(frontier) > limit:
                return edges, frontier
        return edges, frontier

    def _facts(self, nodes: set[str]) -> dict[str, tuple[int, bool]]:
        """Per key: first time seen (µs) and whether it is the id of an accepted order."""
        if not nodes:
            return {}
        self.keys.fill(nodes)
        rows = self.client.query(
            "SELECT order_key, toUnixTimestamp64Micro(min(time)), "
            "max(kind = 'milestone' AND name = 'accepted') "
            f"FROM timeline WHERE order_key IN {self.keys.subquery} GROUP BY order_key"
        ).result_rows
        facts = {str(key): (int(first), bool(accepted)) for key, first, accepted in rows}
        link_rows = self.client.query(
            "SELECT alias, toUnixTimestamp64Micro(min(time)) FROM order_links "
            f"WHERE alias IN {self.keys.subquery} GROUP BY alias"
        ).result_rows
        for key, first in link_rows:
            known = facts.get(str(key))
            if known is None or int(first) < known[0]:
                facts[str(key)] = (int(first), known[1] if known else False)
        return facts

    def _resolve(
        self,
        component: set[str],
        inner: set[tuple[str, str]],
        facts: dict[str, tuple[int, bool]],
        truncated: bool,
    ) -> list[Group]:
        """Canonical id, members and issues of one connected component (``inner``: its edges)."""
        issues = [f"alias cycle: {cycle}" for cycle in _directed_cycles(inner)]
        if truncated:
            issues.append("alias group only partly read: too large or too deep to resolve whole")
        roots = sorted(node for node in component if facts.get(node, (0, False))[1])
        if len(roots) <= 1:
            canonical = (
                roots[0] if roots else min(component, key=lambda k: (facts.get(k, (2**62, False))[0], k))
            )
            return [Group(canonical, tuple(sorted(component)), tuple(issues))]
        owner, contested = _nearest_root(component, inner, roots)
        unowned = tuple(sorted(component - owner.keys()))
        # One pass over owners and conflicts: a value shared by thousands of orders (a payment
        # reference "N/A", say) must cost linear time and memory, never roots x conflicts.
        members_of: dict[str, list[str]] = defaultdict(list)
        for node, owned_by in owner.items():
            members_of[owned_by].append(node)
        conflicts_of: dict[str, list[str]] = defaultdict(list)
        for alias, claimants in sorted(contested.items()):
            for root in claimants:
                if len(conflicts_of[root]) < _MAX_NOTES:
                    conflicts_of[root].append(_conflict_note(alias, root, claimants))
        groups = []
        for root in roots:
            notes = [*issues, *conflicts_of.get(root, [])]
            groups.append(
                Group(
                    root, tuple(sorted(members_of[root])), tuple(notes), unowned if root == roots[0] else ()
                )
            )
        return groups


_MAX_NOTES = 20
# Keys a walk may read per key it starts from, beyond ``max_keys`` (real groups hold a handful).
_KEYS_PER_START = 50
_MAX_NAMED = 5


def _conflict_note(alias: str, root: str, claimants: set[str]) -> str:
    others = sorted(c for c in claimants if c != root)
    named = ", ".join(others[:_MAX_NAMED])
    more = f" and {len(others) - _MAX_NAMED} more" if len(others) > _MAX_NAMED else ""
    return f"conflicting alias {alias} also links {named}{more}"


def _components(nodes: set[str], edges: set[tuple[str, str]]) -> list[set[str]]:
    neighbours: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    seen: set[str] = set()
    components = []
    for node in sorted(nodes):
        if node in seen:
            continue
        component = {node}
        queue = deque([node])
        while queue:
            for other in neighbours[queue.popleft()]:
                if other not in component:
                    component.add(other)
                    queue.append(other)
        seen |= component
        components.append(component)
    return components


def _nearest_root(
    component: set[str], edges: set[tuple[str, str]], roots: list[str]
) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Assign each key to its nearest accepted order; keys equally near two orders are contested."""
    neighbours: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    distance: dict[str, int] = {}
    claims: dict[str, set[str]] = defaultdict(set)
    queue: deque[str] = deque()
    for root in roots:
        distance[root] = 0
        claims[root].add(root)
        queue.append(root)
    while queue:
        node = queue.popleft()
        for other in neighbours[node]:
            if other not in distance:
                distance[other] = distance[node] + 1
                claims[other] |= claims[node]
                queue.append(other)
            elif distance[other] == distance[node] + 1:
                claims[other] |= claims[node]
    owner = {node: next(iter(c)) for node, c in claims.items() if len(c) == 1 and node in component}
    contested = {node: c for node, c in claims.items() if len(c) > 1}
    return owner, contested


def _directed_cycles(edges: set[tuple[str, str]]) -> list[str]:
    """Cycles following alias -> order pointers, each reported once as 'a → b → a'."""
    pointers: dict[str, list[str]] = defaultdict(list)
    for alias, order_key in sorted(edges):
        pointers[alias].append(order_key)
    cycles: set[str] = set()
    done: set[str] = set()
    for start in sorted(pointers):
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                if node in on_path:
                    loop = path[path.index(node) :]
                    turn = loop.index(min(loop))
                    cycles.add(" → ".join([*loop[turn:], *loop[:turn], min(loop)]))
                    continue
                if node in done:
                    continue
                path.append(node)
                on_path.add(node)
            targets = pointers.get(node, [])
            if index < len(targets):
                stack.append((node, index + 1))
                stack.append((targets[index], 0))
            else:
                path.pop()
                on_path.discard(node)
                done.add(node)
    return sorted(cycles)
