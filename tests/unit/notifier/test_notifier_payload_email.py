"""Email messages: headers, parts, determinism, envelope."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from notifier_cases import EXTERNAL_URL, EmailCfg, alert, request, resolved

from contracts.messages import Alert
from stages.notifier.payloads import email_envelope, email_message, message_id_for
from stages.notifier.templates import build_data

MID = "<send-1@tocsin.test>"


def _message(alerts: list[Alert], cfg: EmailCfg, errors: list[str] | None = None, mid: str = MID) -> EmailMessage:
    req = request(alerts, kind="email")
    return email_message(req, cfg, build_data(req, EXTERNAL_URL), mid, errors=errors)


def _parts(msg: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in msg.iter_parts()}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("alerts", "subject"),
    [
        ([alert(), alert(instance="web-2:9100")], "[FIRING:2] HighCPU (node)"),
        ([resolved()], "[RESOLVED] HighCPU (web-1:9100 node)"),
        ([alert(), resolved(instance="web-2:9100")], "[FIRING:1] HighCPU (node)"),
    ],
    ids=["firing", "resolved", "mixed"],
)
def test_default_headers_and_parts(alerts: list[Alert], subject: str) -> None:
    msg = _message(alerts, EmailCfg())
    assert msg["From"] == "tocsin@example.org"
    assert msg["To"] == "oncall@example.org"
    assert msg["Subject"] == subject
    assert msg["Message-ID"] == MID
    assert msg["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert msg.get_content_type() == "multipart/alternative"
    parts = _parts(msg)
    assert list(parts) == ["text/plain", "text/html"]
    assert parts["text/plain"].startswith(subject + "\n")
    assert f"<title>{subject}</title>" in parts["text/html"]


def test_configured_headers_are_rendered_and_structural_ones_ignored() -> None:
    cfg = EmailCfg(
        to="{{ .CommonLabels.job }}-team@example.org",
        headers={
            "subject": "Über {{ .CommonLabels.alertname }}",
            "x-group": "{{ .GroupLabels.alertname }}",
            "Message-Id": "<mine@x>",
            "date": "yesterday",
            "X-Multi": "line1\nline2",
        },
        text="{{ .Alerts | len }} alert(s)",
        html="<p>{{ .CommonAnnotations.summary }}</p>",
    )
    msg = _message([alert(annotations={"summary": "a < b"})], cfg)
    assert msg["To"] == "node-team@example.org"
    assert msg["Subject"] == "Über HighCPU"
    assert msg["X-Group"] == "HighCPU"
    assert msg["X-Multi"] == "line1 line2"  # no header injection
    assert msg.get_all("Message-ID") == [MID]
    assert msg.get_all("Date") == ["Tue, 14 Nov 2023 22:13:20 +0000"]
    assert _parts(msg) == {"text/plain": "1 alert(s)\n", "text/html": "<p>a &lt; b</p>\n"}


def test_message_bytes_are_the_same_for_every_retry() -> None:
    first = _message([alert()], EmailCfg()).as_bytes()
    assert first == _message([alert()], EmailCfg()).as_bytes()
    parsed = message_from_bytes(first, policy=policy.default)
    assert parsed["Subject"] == "[FIRING:1] HighCPU (web-1:9100 node)"
    assert _message([alert()], EmailCfg(), mid="<other@x>").as_bytes() != first


def test_failing_subject_template_falls_back_to_default_subject() -> None:
    errors: list[str] = []
    msg = _message([alert()], EmailCfg(headers={"Subject": "{{ .CommonLabels.nope.deeper }}"}), errors)
    assert msg["Subject"] == "[FIRING:1] HighCPU (web-1:9100 node)"
    assert len(errors) == 1 and errors[0].startswith("email headers.Subject: ")


def test_message_id_for_is_stable_per_send() -> None:
    a, b = request([alert()], req_id="acme/g1/ops/email/0/1"), request([alert()], req_id="acme/g1/ops/email/0/2")
    assert message_id_for(a, "t.example") == message_id_for(a, "t.example")
    assert message_id_for(a, "t.example") != message_id_for(b, "t.example")
    mid = message_id_for(a, "t.example")
    assert mid.startswith("<") and mid.endswith("@t.example>")


@pytest.mark.parametrize(
    ("cfg", "envelope"),
    [
        (EmailCfg(), ("tocsin@example.org", ["oncall@example.org"])),
        (
            EmailCfg(from_="Tocsin <t@example.org>", to="a@example.org, B <b@example.org>"),
            ("t@example.org", ["a@example.org", "b@example.org"]),
        ),
        (EmailCfg(to="{{ .CommonLabels.job }}@example.org"), ("tocsin@example.org", ["node@example.org"])),
    ],
    ids=["plain", "display-names", "templated"],
)
def test_envelope(cfg: EmailCfg, envelope: tuple[str, list[str]]) -> None:
    assert email_envelope(cfg, build_data(request([alert()]), EXTERNAL_URL)) == envelope


@pytest.mark.parametrize(
    "cfg",
    [EmailCfg(from_="a@x.org, b@x.org"), EmailCfg(to=""), EmailCfg(to="{{ .Broken }}"), EmailCfg(from_="nobody")],
    ids=["two-senders", "no-recipient", "broken-template", "not-an-address"],
)
def test_unusable_envelope_raises(cfg: EmailCfg) -> None:
    with pytest.raises(ValueError):
        email_envelope(cfg, build_data(request([alert()]), EXTERNAL_URL))
