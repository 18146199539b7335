"""`helm test`: push one alert to the Alertmanager API, read it back, then resolve it.

Standard library only (runs in the Tocsin image). The alert carries alertname=TocsinHelmTest so a
route can send it to a receiver with no integrations; it is resolved within seconds, well before
the default group_wait, so it should not notify anyone even without such a route.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

BASE = os.environ["TOCSIN_API_URL"].rstrip("/")
DEADLINE = time.monotonic() + float(os.environ.get("TOCSIN_TEST_TIMEOUT", "120"))
TEST_ID = f"{os.environ.get('HOSTNAME', 'helm-test')}-{time.time_ns()}"
LABELS = {"alertname": "TocsinHelmTest", "test_id": TEST_ID}


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def call(method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read()


def retry(what: str, attempt: Callable[[], bool]) -> None:
    """Run attempt() until it returns a true value or the deadline passes (the API may still be starting)."""
    last = "no attempt"
    while time.monotonic() < DEADLINE:
        try:
            if attempt():
                return
            last = "not there yet"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = repr(exc)
        time.sleep(1)
    print(f"FAIL: {what}: {last}", file=sys.stderr)
    sys.exit(1)


def push(ends_at: float | None = None) -> bool:
    alert: dict[str, Any] = {"labels": LABELS, "annotations": {"summary": "helm test of the Tocsin release"}}
    if ends_at is not None:
        alert["endsAt"] = iso(ends_at)
    return call("POST", "/api/v2/alerts", [alert])[0] == 200


def read_back() -> bool:
    query = urllib.parse.urlencode({"filter": f'test_id="{TEST_ID}"'})
    status, body = call("GET", "/api/v2/alerts?" + query)
    return status == 200 and any(a.get("labels", {}).get("test_id") == TEST_ID for a in json.loads(body))


retry(f"POST {BASE}/api/v2/alerts", push)
print(f"pushed alert test_id={TEST_ID}")
retry(f"GET {BASE}/api/v2/alerts found no alert with test_id={TEST_ID}", read_back)
print("read it back from GET /api/v2/alerts")
retry("resolving the test alert", lambda: push(ends_at=time.time()))
print("OK")
