"""Hostile ids and sizes at the API edge, on a real pipeline (issue #27, item 1).

Each request used to reach a NATS subject or message unchecked: nats-server answered
``maximum control line exceeded`` and closed the connection every stage shares, or the rules
partition looped on an oversized message. Now each one is a 4xx naming the limit it breaks,
and afterwards a canary alert of another organisation is still pushed and read back, and the
process is still ready: the connection survived.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pipeline.application.app import Settings
from pipeline.application.settings import load_text
from pipeline.foundation.embedded import NatsServer
from tests.pipeline_process import running
from tests.times import iso

pytestmark = pytest.mark.integration

# Push limits stay at their defaults; the silence and ack ones are set, to show they are read.
CONFIG = """
route:
  receiver: team
receivers:
  - name: team
tocsin:
  default_org: acme
  limits:
    max_silence_matchers: 5
    max_silence_regex_length: 64
    max_ack_comment_length: 100
"""
CANARY = {"X-Scope-OrgID": "canary"}


@pytest.fixture
async def api(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(storage_path=tmp_path / "data", nats_url=nats_server.url, listen="127.0.0.1:0",
                        loaded=load_text(CONFIG), partitions=4)
    async with running(settings, ["rules", "api"]) as ep, httpx.AsyncClient(base_url=ep.api_url, timeout=15) as c:
        yield c


async def canary_survives(api: httpx.AsyncClient, case: str) -> None:
    """Another organisation's alert is still taken and listed, and the process is ready."""
    r = await api.post("/api/v2/alerts", json=[{"labels": {"alertname": "Canary", "case": case}}], headers=CANARY)
    assert r.status_code == 200, f"{case}: canary push answered {r.status_code} {r.text}"
    with anyio.fail_after(10):
        while True:
            listed = (await api.get("/api/v2/alerts", headers=CANARY)).json()
            if any(a["labels"].get("case") == case for a in listed):
                break
            await anyio.sleep(0.05)
    assert (await api.get("/-/ready")).status_code == 200, case
    assert (await api.get("/-/healthy")).status_code == 200, case


def alert(labels: dict[str, str], **extra: Any) -> list[dict[str, Any]]:
    return [{"labels": labels, **extra}]


PUSHES = [
    ("org_id of 4,000 characters", alert({"alertname": "A", "org_id": "o" * 4000}), "longer than 150 characters"),
    ("org_id *", alert({"alertname": "A", "org_id": "*"}), '"*" is not an organisation'),
    ("org_id A|B", alert({"alertname": "A", "org_id": "A|B"}), "contains '|'"),
    ("org_id with a control character", alert({"alertname": "A", "org_id": "a\x01b"}), "control character"),
    ("org_id with a slash", alert({"alertname": "A", "org_id": "a/b"}), "contains '/'"),
    ("label value of 3 MiB", alert({"alertname": "A", "big": "v" * (3 << 20)}), "limits.max_label_value_length"),
    ("label name of 2,000 characters", alert({"alertname": "A", "n" * 2000: "v"}), "limits.max_label_name_length"),
    ("129 labels", alert({f"l{i}": "v" for i in range(129)}), "limits.max_labels_per_alert"),
    ("annotations of 40 KiB", alert({"alertname": "A"}, annotations={"d": "x" * (40 << 10)}),
     "limits.max_annotation_bytes"),
    ("alert of 80 KiB", alert({"alertname": "A", **{f"l{i}": "v" * 10_000 for i in range(8)}}),
     "limits.max_alert_bytes"),
]


async def test_hostile_pushes_are_refused_and_the_pipeline_survives(api: httpx.AsyncClient) -> None:
    for case, body, named in PUSHES:
        r = await api.post("/api/v2/alerts", json=body)
        assert r.status_code == 400, f"{case}: {r.status_code} {r.text[:200]}"
        assert named in r.json(), f"{case}: {r.text[:300]}"
        assert len(r.content) < 1000, f"{case}: the answer echoes the value"
        await canary_survives(api, case)
    # none of them got in: every alert listed (open mode, no header: every organisation) is a canary
    assert {a["labels"]["alertname"] for a in (await api.get("/api/v2/alerts")).json()} == {"Canary"}


async def test_hostile_acks_and_silences_are_refused_and_the_pipeline_survives(api: httpx.AsyncClient) -> None:
    now = time.time()

    def silence(matchers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"matchers": matchers, "startsAt": iso(now), "endsAt": iso(now + 3600), "createdBy": "ops",
                "comment": "c", **extra}

    def eq(i: int) -> dict[str, Any]:
        return {"name": f"l{i}", "value": "v", "isRegex": False, "isEqual": True}

    cases: list[tuple[str, str, str, Any, str]] = [
        ("ack fingerprint of 5,000 characters", "POST", "/api/tocsin/acks", {"fingerprint": "f" * 5000},
         "fingerprint must be 16 lower-case hex digits"),
        ("ack fingerprint with a newline", "POST", "/api/tocsin/acks", {"fingerprint": "0123456789abcde\n"},
         "fingerprint must be 16"),
        ("ack groupKey of 70,000 characters", "POST", "/api/tocsin/acks", {"groupKey": "k" * 70_000},
         "groupKey is longer than 65536 characters"),
        ("ack by with a control character", "POST", "/api/tocsin/acks",
         {"fingerprint": "0123456789abcdef", "by": "a\x00"}, "by contains a control character"),
        ("ack comment over the limit", "POST", "/api/tocsin/acks",
         {"fingerprint": "0123456789abcdef", "comment": "c" * 101}, "limits.max_ack_comment_length"),
        ("silence with 6 matchers", "POST", "/api/v2/silences", silence([eq(i) for i in range(6)]),
         "limits.max_silence_matchers"),
        ("silence regex of 65 characters", "POST", "/api/v2/silences",
         silence([{"name": "a", "value": "x" * 65, "isRegex": True, "isEqual": True}]),
         "limits.max_silence_regex_length"),
        ("silence id of 5,000 characters", "POST", "/api/v2/silences", silence([eq(0)], id="s" * 5000),
         "silence id is longer than 1024 characters"),
    ]
    for case, method, path, body, named in cases:
        r = await api.request(method, path, json=body)
        assert r.status_code == 400, f"{case}: {r.status_code} {r.text[:200]}"
        assert named in r.json(), f"{case}: {r.text[:300]}"
        await canary_survives(api, case)
    # An id no silence can have, in the path: unknown (404), as the API documents for non-UUIDs.
    for method in ("GET", "DELETE"):
        r = await api.request(method, "/api/v2/silence/" + "s" * 5000)
        assert r.status_code == 404, f"{method}: {r.status_code} {r.text[:200]}"
        await canary_survives(api, f"silence {method} by an id of 5,000 characters")
    assert (await api.get("/api/tocsin/acks")).json() == []
