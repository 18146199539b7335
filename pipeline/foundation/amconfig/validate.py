"""Whole-config checks Alertmanager makes after each mapping has been read.

Every problem is reported through ``report(obj, field, message)``, where ``obj`` is the
decoded Struct the problem is about, so the loader can name its line and path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from contracts.matchers import go_quote
from pipeline.foundation.amconfig.model import Config, RouteConfig

__all__ = ["Report", "iter_routes", "validate_config"]

Report = Callable[[object, str | None, str], None]


def iter_routes(route: RouteConfig) -> Iterator[RouteConfig]:
    """Every node of a route tree, depth first, parents before children."""
    yield route
    for child in route.routes:
        yield from iter_routes(child)


def validate_config(config: Config, report: Report) -> None:
    """Check the cross references and root-route rules of a decoded config."""
    names: set[str] = set()
    for rcv in config.receivers:
        if rcv.name in names:
            report(rcv, "name", f"notification config name {go_quote(rcv.name)} is not unique")
        names.add(rcv.name)

    interval_names: set[str] = set()
    for kind, intervals in (
        ("mute time interval", config.mute_time_intervals),
        ("time interval", config.time_intervals),
    ):
        for ti in intervals:
            if ti.name in interval_names:
                report(ti, "name", f"{kind} {go_quote(ti.name)} is not unique")
            interval_names.add(ti.name)

    root = config.route
    if root is None:
        report(config, None, "no route provided in config")
        return
    if root.continue_:
        report(root, "continue_", "cannot have continue in root route")
    if not root.receiver:
        report(root, None, "root route must specify a default receiver")
    for field in ("match", "match_re", "matchers"):
        if getattr(root, field):
            report(root, field, "root route must not have any matchers")
    if root.mute_time_intervals:
        report(root, "mute_time_intervals", "root route must not have any mute time intervals")
    if root.active_time_intervals:
        report(root, "active_time_intervals", "root route must not have any active time intervals")

    for route in iter_routes(root):
        if route.receiver and route.receiver not in names:
            report(route, "receiver", f"undefined receiver {go_quote(route.receiver)} used in route")
        for field in ("active_time_intervals", "mute_time_intervals"):
            for name in getattr(route, field):
                if name not in interval_names:
                    report(route, field, f"undefined time interval {go_quote(name)} used in route")
