"""How the router core gets its routes: a ``RouteTable`` of compiled route trees per organisation.

Every organisation routes through the default tree (the global ``alertmanager.yml``) unless
it has a tree of its own. The table also answers the router's hot question, "which groups
does an alert with these labels belong to?" (:meth:`RouteTable.targets`), and carries a
``version`` per organisation: a digest of everything in its tree that decides group
membership, so the core can tell groups made under another configuration apart cheaply.

Group identity: ``group_id`` is a 64-bit hex digest of (org, receiver, group key). The
receiver is part of it because two sibling routes with identical matchers (a common
``continue: true`` pattern: one route per receiver) have identical Alertmanager group keys;
Alertmanager keeps those apart per route object and its notification log keys them by
(receiver, group key), which is exactly this identity.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from contracts.matchers import Matcher, MatchType, compile_go_regex, go_quote
from pipeline.foundation.amconfig import Config, RouteConfig, RouteNode, compile_routes, route_index

__all__ = ["RouteTable", "Target", "group_id_of"]


class Target(msgspec.Struct, frozen=True):
    """One aggregation group an alert belongs to (a Struct: made for every new group, and a
    frozen dataclass's ``__init__`` cost more than the rest of the lookup)."""

    route: RouteNode
    group_labels: dict[str, str]
    group_key: str  # Alertmanager's ``<route key>:<group labels>``
    group_id: str  # 16 hex digits, safe in subjects and message ids


def group_id_of(org: str, receiver: str, group_key: str) -> str:
    """The stable id of a group: blake2b-64 of (org, receiver, group key), in hex."""
    return hashlib.blake2b(f"{org}\x00{receiver}\x00{group_key}".encode(), digest_size=8).hexdigest()


# Label values repeat a lot (alertname, cluster, ...); quoting them is the costly part of a group key.
_quote = functools.lru_cache(maxsize=1 << 16)(go_quote)


def _format_labelset(labels: Mapping[str, str]) -> str:
    """``contracts.matchers.format_labelset`` with cached quoting (same output)."""
    return "{" + ", ".join([f"{name}={_quote(labels[name])}" for name in sorted(labels)]) + "}"


def _tree_version(root: RouteNode) -> str:
    """Digest of what decides group membership and identity in a tree (not timers)."""
    h = hashlib.blake2b(digest_size=6)
    for node in root.walk():
        h.update(repr((node.id, node.key, node.receiver, sorted(node.group_by), node.group_by_all,
                       node.continue_)).encode())
    return h.hexdigest()


def _predicate(matchers: tuple[Matcher, ...]) -> Callable[[Callable[[str, str], str]], bool]:
    """One function testing all of a route's matchers against ``labels.get``.

    Generated source (literals through ``repr``) so a check costs no loop or call per matcher;
    equality first, regular expressions last. A missing label reads as ``""``, as in
    Alertmanager.
    """
    order = sorted(matchers, key=lambda m: m.is_regex)
    env: dict[str, Any] = {}
    terms = []
    for i, m in enumerate(order):
        read = f"g({m.name!r}, '')"
        if m.type is MatchType.EQUAL:
            terms.append(f"{read} == {m.value!r}")
        elif m.type is MatchType.NOT_EQUAL:
            terms.append(f"{read} != {m.value!r}")
        else:
            env[f"r{i}"] = compile_go_regex(m.value).match
            terms.append(f"r{i}({read}) is {'not ' if m.type is MatchType.REGEX else ''}None")
    source = f"def pred(g):\n    return {' and '.join(terms) or 'True'}\n"
    exec(source, env)  # only repr'd literals and names bound above
    pred: Callable[[Callable[[str, str], str]], bool] = env["pred"]
    return pred


class _Node:
    """A route compiled for fast matching; same results as ``RouteNode.match``.

    A node's children are indexed by the label most of them test for equality
    (``team="db"``, ``team="web"``...), so a wide fan-out costs one dict lookup instead of
    one check per child.
    """

    __slots__ = ("by_value", "children", "continue_", "index_label", "pred", "route", "unindexed")

    def __init__(self, route: RouteNode) -> None:
        self.route = route
        self.continue_ = route.continue_
        self.pred = _predicate(route.matchers)
        self.children = tuple(_Node(child) for child in route.routes)
        equal = [{m.name: m.value for m in c.route.matchers if m.type is MatchType.EQUAL}
                 for c in self.children]
        counts: dict[str, int] = {}
        for names in equal:
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        self.index_label = max(counts, key=lambda n: (counts[n], n)) if counts else ""
        every = range(len(self.children))
        if not self.index_label or counts[self.index_label] < 2:
            self.index_label, self.by_value = "", {}
            self.unindexed = tuple(self.children)
            return
        wanted = [names.get(self.index_label) for names in equal]
        self.unindexed = tuple(self.children[i] for i in every if wanted[i] is None)
        # Children in tree order that can match when the index label has this value.
        self.by_value = {v: tuple(self.children[i] for i in every if wanted[i] in (None, v))
                         for v in {w for w in wanted if w is not None}}

    def match(self, g: Callable[[str, str], str], out: list[RouteNode]) -> bool:
        """Append the routes an alert (``g`` = its ``labels.get``) ends in below and including
        this node; False when this node does not match."""
        if not self.pred(g):
            return False
        found = False
        if self.index_label:
            order = self.by_value.get(g(self.index_label, ""), self.unindexed)
        else:
            order = self.unindexed
        for child in order:
            if child.match(g, out):
                found = True
                if not child.continue_:
                    break
        if not found:
            out.append(self.route)
        return True


class _Grouping:
    """How one route turns an alert into a group: its names in order, and memoised targets."""

    __slots__ = ("by", "memo", "route")

    def __init__(self, route: RouteNode) -> None:
        self.route = route
        self.by = None if route.group_by_all else tuple(sorted(route.group_by))
        self.memo: dict[tuple[str, tuple[str | None, ...]], Target] = {}

    def target(self, org: str, labels: Mapping[str, str]) -> Target:
        route = self.route
        if self.by is None:  # group_by '...': every label, nothing worth remembering
            glabels = dict(labels)
            key = f"{route.key}:{_format_labelset(glabels)}"
            return Target(route, glabels, key, group_id_of(org, route.receiver, key))
        values = tuple(map(labels.get, self.by))
        memo_key = (org, values)
        hit = self.memo.get(memo_key)
        if hit is None:
            glabels = {k: v for k, v in zip(self.by, values, strict=True) if v is not None}
            key = f"{route.key}:{_format_labelset(glabels)}"
            hit = Target(route, glabels, key, group_id_of(org, route.receiver, key))
            if len(self.memo) >= _MEMO_SIZE:
                self.memo.clear()
            self.memo[memo_key] = hit
        return hit


_MEMO_SIZE = 1 << 16


class _Tree:
    __slots__ = ("by_id", "compiled", "grouping", "root", "version")

    def __init__(self, root: RouteNode) -> None:
        self.root = root
        self.compiled = _Node(root)
        self.by_id = route_index(root)
        self.grouping = {id(node): _Grouping(node) for node in root.walk()}
        self.version = _tree_version(root)

    def match(self, labels: Mapping[str, str]) -> list[RouteNode]:
        out: list[RouteNode] = []
        self.compiled.match(labels.get, out)
        return out


class RouteTable:
    """Compiled route trees: one default tree and optional per-organisation trees.

    Immutable once built; a configuration reload builds a new table and a new core.
    """

    __slots__ = ("_default", "_orgs")

    def __init__(self, default: RouteNode, orgs: Mapping[str, RouteNode] | None = None) -> None:
        self._default = _Tree(default)
        self._orgs = {org: _Tree(root) for org, root in (orgs or {}).items()}

    @classmethod
    def from_config(cls, default: Config | RouteConfig,
                    orgs: Mapping[str, Config | RouteConfig] | None = None) -> RouteTable:
        """Compile a loaded ``alertmanager.yml`` (and per-organisation ones) into a table."""
        return cls(compile_routes(default), {org: compile_routes(c) for org, c in (orgs or {}).items()})

    def _tree(self, org: str) -> _Tree:
        return self._orgs.get(org, self._default)

    def tree(self, org: str) -> RouteNode:
        """The root route of ``org``'s tree."""
        return self._tree(org).root

    def version(self, org: str) -> str:
        """Digest of the membership-relevant part of ``org``'s tree (changes on a relevant reload)."""
        return self._tree(org).version

    def route(self, org: str, route_id: str) -> RouteNode | None:
        """The route with path id ``route_id`` (``"0.2.1"``) in ``org``'s tree, if any."""
        return self._tree(org).by_id.get(route_id)

    def match(self, org: str, labels: Mapping[str, str]) -> list[RouteNode]:
        """The routes ``labels`` end in (``RouteNode.match`` of ``org``'s tree, faster)."""
        return self._tree(org).match(labels)

    def targets(self, org: str, labels: Mapping[str, str]) -> list[Target]:
        """The groups an alert with ``labels`` belongs to, in tree order, one per distinct group id.

        Targets are shared between calls: treat them (and their ``group_labels``) as read-only.
        """
        tree = self._tree(org)
        grouping = tree.grouping
        out: list[Target] = []
        for route in tree.match(labels):
            target = grouping[id(route)].target(org, labels)
            if len(out) == 0 or all(t.group_id != target.group_id for t in out):
                out.append(target)
        return out
