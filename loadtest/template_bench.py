"""Go template rendering speed: the default Slack title and text of a 10-alert group.

    .venv/bin/python -m loadtest.template_bench [--alerts 10] [--renders 20000] [--repeat 5]

Builds the template data of one send request with ``--alerts`` firing alerts, compiles the
default template set once (as a config load does), then renders the Slack receiver's
default ``title`` and ``text`` fields (``{{ template "slack.default.title" . }}`` and
``{{ template "slack.default.text" . }}``, what a ``slack_configs`` entry without them
sends) ``--renders`` times, ``--repeat`` times over, and prints the best µs per render of
the pair. Target: at most 100 µs. ``--field`` adds a custom field to the pair, e.g.
``--field '{{ range .Alerts }}{{ .Annotations.summary }}{{ end }}'``.
"""

from __future__ import annotations

import argparse
import time

from contracts.messages import Alert, Integration, SendRequest
from stages.notifier.templates import TemplateSet, build_data

__all__ = ["main", "render_pair_us"]

TITLE = '{{ template "slack.default.title" . }}'
TEXT = '{{ template "slack.default.text" . }}'
NOW = 1_700_000_000.0


def _request(n: int) -> SendRequest:
    alerts = [
        Alert(fingerprint=f"fp{i:04d}", org="acme",
              labels={"alertname": "HighCPU", "instance": f"web-{i}:9100", "job": "node", "severity": "page"},
              annotations={"summary": f"CPU high on web-{i}", "description": "over 90% for 10m"},
              starts_at=NOW - 600 - i, ends_at=None, generator_url="http://prom.example/graph")
        for i in range(n)
    ]
    return SendRequest(id="acme/g1/ops/slack/0/1", org="acme", group_key='{}:{alertname="HighCPU"}', group_id="g1",
                       receiver="ops", integration=Integration(kind="slack", index=0), flush_seq=1, status="firing",
                       group_labels={"alertname": "HighCPU"}, alerts=alerts, created_at=NOW, acknowledged=False)


def render_pair_us(alerts: int = 10, renders: int = 20000, repeat: int = 5, fields: tuple[str, ...] = ()) -> float:
    """Best µs per render of the default Slack title and text (plus ``fields``) of one group."""
    templates = TemplateSet()
    data = build_data(_request(alerts), "http://am.example:9093")
    texts = (TITLE, TEXT, *fields)
    for text in texts:  # compile once; check they render
        _, err = templates.render(text, data, "")
        assert err is None, err
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(renders):
            for text in texts:
                templates.render(text, data, "")
        best = min(best, (time.perf_counter() - start) / renders * 1e6)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m loadtest.template_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=10)
    ap.add_argument("--renders", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--field", action="append", default=[], help="a further field template to render each time")
    args = ap.parse_args(argv)
    us = render_pair_us(args.alerts, args.renders, args.repeat, tuple(args.field))
    data = build_data(_request(args.alerts), "http://am.example:9093")
    title, _ = TemplateSet().render(TITLE, data, "")
    print(f"title: {title!r}")
    print(f"default Slack title + text of a {args.alerts}-alert group: {us:.1f} µs per render "
          f"(best of {args.repeat} x {args.renders}; target <= 100 µs)")


if __name__ == "__main__":
    main()
