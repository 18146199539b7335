"""The route tree compiled for evaluation, with Alertmanager's matching and keys.

``compile_routes`` turns the configured tree into ``RouteNode`` objects once: inherited
options are resolved (receiver, group_by, timers, labels; time intervals are *not*
inherited, as in Alertmanager), matchers are merged and sorted, and each node gets:

- ``id``: Tocsin's stable path id, ``"0"`` for the root, ``"0.1"`` for its second child;
- ``key``: Alertmanager's ``Route.Key()`` (``{}/{service="db"}``), the prefix of group keys;
- ``am_id``: Alertmanager's ``Route.ID()`` (the key plus sibling positions);
- ``idx``: Alertmanager's post-order index.

Group keys are ``<route key>:<group labels>`` exactly as Alertmanager's aggregation groups
print them, so notification dedup keys and the API agree with Alertmanager.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from contracts.matchers import Matcher, format_labelset, format_matchers, matchers_match
from pipeline.foundation.amconfig.model import Config, RouteConfig

__all__ = [
    "DEFAULT_GROUP_INTERVAL",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_REPEAT_INTERVAL",
    "RouteNode",
    "compile_routes",
    "group_key",
    "group_key_hash",
    "group_labels",
    "render_matching_tree",
    "render_routes_test",
    "render_routes_tree",
    "route_index",
]

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


@dataclass(eq=False)
class RouteNode:
    """A compiled route; treat as read-only once ``compile_routes`` returns it."""

    id: str
    matchers: tuple[Matcher, ...]
    receiver: str
    group_by: frozenset[str]
    group_by_all: bool
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool
    mute_time_intervals: tuple[str, ...]
    active_time_intervals: tuple[str, ...]
    labels: Mapping[str, str]
    key: str
    am_id: str
    idx: int = -1
    routes: tuple[RouteNode, ...] = ()
    parent: RouteNode | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"RouteNode(id={self.id!r}, receiver={self.receiver!r}, matchers={format_matchers(self.matchers)}, "
            f"continue_={self.continue_}, routes={len(self.routes)})"
        )

    def match(self, labels: Mapping[str, str]) -> list[RouteNode]:
        """The routes an alert with ``labels`` ends in, in tree order.

        Depth first; the first matching child wins unless it has ``continue: true``, and a
        node none of whose children match is itself the match.
        """
        if not matchers_match(self.matchers, labels):
            return []
        found: list[RouteNode] = []
        for child in self.routes:
            hits = child.match(labels)
            found.extend(hits)
            if hits and not child.continue_:
                break
        return found or [self]

    def walk(self) -> Iterator[RouteNode]:
        """This node and its descendants, parents first."""
        yield self
        for child in self.routes:
            yield from child.walk()

    def receivers(self, labels: Mapping[str, str]) -> list[str]:
        return [r.receiver for r in self.match(labels)]


def compile_routes(config: Config | RouteConfig) -> RouteNode:
    """Compile the route tree of a loaded config (or a bare route mapping)."""
    root = config.route if isinstance(config, Config) else config
    if root is None:
        raise ValueError("config has no route")
    counter = [0]
    return _compile(root, None, "0", 0, counter)


def _compile(cr: RouteConfig, parent: RouteNode | None, node_id: str, position: int, counter: list[int]) -> RouteNode:
    if parent is None:
        receiver, group_by, group_by_all = "", frozenset[str](), False
        timers = (DEFAULT_GROUP_WAIT, DEFAULT_GROUP_INTERVAL, DEFAULT_REPEAT_INTERVAL)
        labels: Mapping[str, str] = {}
    else:
        receiver, group_by, group_by_all = parent.receiver, parent.group_by, parent.group_by_all
        timers = (parent.group_wait, parent.group_interval, parent.repeat_interval)
        labels = parent.labels
    if cr.receiver:
        receiver = cr.receiver
    if cr.group_by is not None:
        named = [name for name in cr.group_by if name != "..."]
        if named or not cr.group_by_all:  # an explicit list (even empty) replaces the parent's
            group_by, group_by_all = frozenset(named), False
        else:
            group_by_all = True
    if cr.labels:
        labels = {**labels, **cr.labels}
    matchers = tuple(cr.all_matchers())
    slug = format_matchers(matchers)
    node = RouteNode(
        id=node_id,
        matchers=matchers,
        receiver=receiver,
        group_by=group_by,
        group_by_all=group_by_all,
        group_wait=timers[0] if cr.group_wait is None else cr.group_wait,
        group_interval=timers[1] if cr.group_interval is None else cr.group_interval,
        repeat_interval=timers[2] if cr.repeat_interval is None else cr.repeat_interval,
        continue_=cr.continue_,
        mute_time_intervals=tuple(cr.mute_time_intervals),
        active_time_intervals=tuple(cr.active_time_intervals),
        labels=labels,
        key=slug if parent is None else f"{parent.key}/{slug}",
        am_id=slug if parent is None else f"{parent.am_id}/{slug}/{position}",
        parent=parent,
    )
    node.routes = tuple(_compile(child, node, f"{node_id}.{i}", i, counter) for i, child in enumerate(cr.routes))
    node.idx = counter[0]  # children first, as Alertmanager numbers them
    counter[0] += 1
    return node


def route_index(root: RouteNode) -> dict[str, RouteNode]:
    """Nodes by ``id``."""
    return {node.id: node for node in root.walk()}


def group_labels(route: RouteNode, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels of an alert that define its aggregation group on ``route``."""
    return {k: v for k, v in labels.items() if route.group_by_all or k in route.group_by}


def group_key(route: RouteNode, labels: Mapping[str, str]) -> str:
    """Alertmanager's group key: ``{}/{team="db"}:{alertname="X", cluster="a"}``."""
    return f"{route.key}:{format_labelset(group_labels(route, labels))}"


def group_key_hash(key: str) -> str:
    """SHA-256 hex of a group key, as Alertmanager derives dedup keys from it."""
    return hashlib.sha256(key.encode()).hexdigest()


# --------------------------------------------------------------------------- amtool output


def _slug(route: RouteNode, *, show_continue: bool, show_receiver: bool) -> str:
    text = format_matchers(route.matchers) if route.matchers else "default-route"
    if route.continue_ and show_continue:
        text += "  continue: true"
    if show_receiver:
        text += f"  receiver: {route.receiver}"
    return text


# A printed tree node: its text and its children (xlab/treeprint's layout, as amtool uses).
_Entry = tuple[str, list["_Entry"]]


def _tree_lines(entries: Sequence[_Entry], prefix: str) -> list[str]:
    lines: list[str] = []
    for i, (text, children) in enumerate(entries):
        last = i == len(entries) - 1
        lines.append(f"{prefix}{'└──' if last else '├──'} {text}")
        # amtool's tree printer (treeprint) pads a continuing branch with no-break spaces
        lines += _tree_lines(children, prefix + ("    " if last else "│\u00a0\u00a0 "))
    return lines


def _show_entry(route: RouteNode) -> _Entry:
    return _slug(route, show_continue=True, show_receiver=True), [_show_entry(c) for c in route.routes]


def render_routes_tree(root: RouteNode) -> str:
    """What ``amtool config routes show`` prints."""
    return "\n".join(["Routing tree:", ".", *_tree_lines([_show_entry(root)], "")]) + "\n\n"


def _matching_entry(route: RouteNode, labels: Mapping[str, str]) -> _Entry:
    children: list[_Entry] = []
    for child in route.routes:
        if matchers_match(child.matchers, labels):
            children.append(_matching_entry(child, labels))
            if not child.continue_:
                break
    return _slug(route, show_continue=False, show_receiver=not children), children


def render_matching_tree(root: RouteNode, labels: Mapping[str, str]) -> str:
    """What ``amtool config routes test --tree`` prints before the receivers."""
    return "\n".join(["Matching routes:", ".", *_tree_lines([_matching_entry(root, labels)], "")]) + "\n\n"


def render_routes_test(root: RouteNode, labels: Mapping[str, str]) -> str:
    """What ``amtool config routes test`` prints: the receivers, comma-separated."""
    return ",".join(root.receivers(labels))
