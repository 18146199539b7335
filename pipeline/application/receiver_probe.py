"""``tocsin test-receiver NAME``: one synthetic notification through a receiver's integrations,
rendered with the real templates, and what each endpoint answered ("test channels" in a runbook).

It goes through the same senders as the notifier (templates, auth, ``http_config``, secrets)
but not through the ledger, retries or fallback: one attempt per integration, now. With
``--dry-run`` the HTTP integrations' requests are shown instead of sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from contracts import Alert
from contracts.labels import fingerprint
from contracts.messages import Integration, SendRequest
from pipeline.foundation.amconfig import Config, compile_routes, group_labels
from pipeline.foundation.amconfig.receivers import delivered_integrations
from pipeline.foundation.amconfig.values import Secret
from pipeline.foundation.http1 import HttpResponse
from stages.notifier.delivery import Sender, attempt
from stages.notifier.http import HttpSender
from stages.notifier.senders import build_senders

__all__ = ["Probe", "RecordedRequest", "RecordingClient", "parse_labels", "probe_receiver", "synthetic_request"]

_SHOWN_BODY = 4096  # bytes of a dry run's body shown


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """``name=value`` words as a label set; ValueError names a bad one."""
    labels: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{item!r} is not label=value")
        labels[name] = value.strip('"')
    return labels


def synthetic_request(config: Config, receiver: str, labels: dict[str, str], kind: str, index: int, *,
                      resolved: bool, now: float, org: str = "test") -> SendRequest:
    """The send request a group of one alert with ``labels`` would make to one integration."""
    labels = {"alertname": "TocsinTestReceiver", **labels}
    routes = [r for r in compile_routes(config).match(labels) if r.receiver == receiver]
    glabels = group_labels(routes[0], labels) if routes else {"alertname": labels["alertname"]}
    alert = Alert(fingerprint=fingerprint(labels), org=org, labels=labels,
                  annotations={"summary": f"Test notification from tocsin test-receiver to {receiver}"},
                  starts_at=now - 60, ends_at=now if resolved else None, updated_at=now)
    key = "{}:" + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(glabels.items())) + "}"
    return SendRequest(id=f"test-receiver/{uuid.uuid4().hex}", org=org, group_key=key, group_id="test-receiver",
                       receiver=receiver, integration=Integration(kind=kind, index=index), flush_seq=1,
                       status="resolved" if resolved else "firing", group_labels=glabels, alerts=[alert],
                       created_at=now)


@dataclass
class RecordedRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class RecordingClient:
    """Stands in for an integration's HTTP client in a dry run: keeps each request, sends nothing,
    and answers 200 with an empty JSON object."""

    requests: list[RecordedRequest] = field(default_factory=list)

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> HttpResponse:
        return await self.request("POST", url, headers, body)

    async def request(self, method: str, url: str, headers: Sequence[tuple[str, str]],
                      body: bytes = b"") -> HttpResponse:
        self.requests.append(RecordedRequest(method, url, list(headers), body))
        return HttpResponse(200, [(b"content-type", b"application/json")], b"{}")

    async def aclose(self) -> None:
        return None


@dataclass
class Probe:
    """What one integration did: its outcome, or in a dry run the requests it would make."""

    kind: str
    index: int
    ok: bool
    detail: str
    requests: list[RecordedRequest] = field(default_factory=list)

    hidden: tuple[str, ...] = ()  # the integration's credentials: never printed

    def lines(self) -> list[str]:
        out = [f"{self.kind}[{self.index}]: {'OK' if self.ok else 'FAILED'} {self.detail}".rstrip()]
        for r in self.requests:
            out.append(f"  {r.method} {self._masked(r.url)}")
            out += [f"  {name}: {'<secret>' if name.lower() in _SECRET_HEADERS else self._masked(value)}"
                    for name, value in r.headers]
            if r.body:
                text = r.body[:_SHOWN_BODY].decode("utf-8", "replace")
                out.append("  " + self._masked(text) + (" ..." if len(r.body) > _SHOWN_BODY else ""))
        return out

    def _masked(self, text: str) -> str:
        for secret in self.hidden:  # as written, and as a URL or a form carries it
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, "<secret>")
        return text


_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-auth-token", "x-user-id"})


def _credentials(cfg: Any) -> tuple[str, ...]:
    """Every secret of an integration's configuration, inline or read from its ``*_file``."""
    found: list[str] = []
    for name in getattr(cfg, "__struct_fields__", ()):
        value = getattr(cfg, name)
        if isinstance(value, Secret) and value.value:
            found.append(value.value)
        elif name.endswith("_file") and isinstance(value, str) and value:
            try:
                found.append(Path(value).read_text().strip())
            except OSError:
                pass  # the send itself reports an unreadable file
        elif name == "http_config" and value is not None:
            found += _credentials(value)
        elif hasattr(value, "__struct_fields__"):
            found += _credentials(value)
    return tuple(s for s in found if len(s) >= 4)  # shorter ones would mask ordinary text


async def probe_receiver(config: Config, receiver: str, labels: dict[str, str], *, resolved: bool = False,
                         dry_run: bool = False, external_url: str = "http://localhost:9093",
                         now: float | None = None) -> list[Probe]:
    """One attempt per integration of ``receiver`` (``ValueError`` for an unknown receiver)."""
    rcv = next((r for r in config.receivers if r.name == receiver), None)
    if rcv is None:
        raise ValueError(f"no receiver {receiver!r} (known: {', '.join(r.name for r in config.receivers)})")
    now = time.time() if now is None else now
    senders = build_senders(config, external_url=external_url)
    probes: list[Probe] = []
    try:
        for problem in senders.problems:
            if f"receiver {receiver!r}" in problem:
                probes.append(Probe("config", 0, False, problem))
        for kind, index, cfg in delivered_integrations(rcv):
            sender: Sender | None = senders.get((receiver, kind, index))
            if sender is None:
                continue  # its problem is listed above
            req = synthetic_request(config, receiver, labels, kind, index, resolved=resolved, now=now)
            recorder: Any = None
            if dry_run:
                if not isinstance(sender, HttpSender):
                    probes.append(Probe(kind, index, True, "(dry run: not an HTTP integration, nothing shown)"))
                    continue
                recorder = sender.client = RecordingClient()  # type: ignore[assignment]
            outcome = await attempt(sender, req, now)
            if recorder is not None:  # the stand-in's answer means nothing: did it get as far as a request?
                made = bool(recorder.requests)
                probes.append(Probe(kind, index, made, "dry run, not sent" if made else f"dry run: {outcome.error}",
                                    recorder.requests, hidden=_credentials(cfg)))
                continue
            detail = f"status {outcome.status}" if outcome.status else ("sent" if outcome.ok else "")
            probes.append(Probe(kind, index, outcome.ok, detail + (f": {outcome.error}" if outcome.error else "")))
    finally:
        await senders.aclose()
    return probes
