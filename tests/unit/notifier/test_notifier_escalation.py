"""An escalation step's notification: the level in the webhook message and the template data;
Opsgenie acknowledges an acknowledged group."""

from __future__ import annotations

import msgspec
from notifier_cases import EXTERNAL_URL, WebhookCfg, alert, request

from pipeline.foundation.amconfig.model import OpsgenieConfig
from stages.notifier.integrations.opsgenie import opsgenie_requests
from stages.notifier.payloads import webhook_body, webhook_payload
from stages.notifier.templates import build_data
from stages.notifier.templates.engine import render

API = "https://api.opsgenie.com/"


def _step(level: int, policy: str = "critical", **kw: object) -> object:
    return msgspec.structs.replace(request([alert()], **kw), escalation_level=level,  # type: ignore[arg-type]
                                   escalation_policy=policy)


def test_webhook_carries_the_level_of_a_step_and_nothing_at_level_0() -> None:
    cfg = WebhookCfg()
    step = _step(2)
    body = msgspec.json.decode(webhook_body(step, cfg, EXTERNAL_URL))  # type: ignore[arg-type]
    assert body["escalation"] == {"level": 2, "policy": "critical"}
    assert webhook_body(step, cfg, EXTERNAL_URL) == msgspec.json.encode(  # type: ignore[arg-type]
        webhook_payload(step, cfg, EXTERNAL_URL))  # type: ignore[arg-type]
    plain = msgspec.json.decode(webhook_body(request([alert()]), cfg, EXTERNAL_URL))
    assert "escalation" not in plain
    assert "escalation" not in webhook_payload(request([alert()]), cfg, EXTERNAL_URL)


def test_templates_read_escalation_level_and_policy() -> None:
    text, err = render("L{{ .Escalation.Level }} {{ .Escalation.Policy }}", build_data(_step(3), EXTERNAL_URL))  # type: ignore[arg-type]
    assert (text, err) == ("L3 critical", None)
    text, err = render("L{{ .Escalation.Level }}[{{ .Escalation.Policy }}]", build_data(request([alert()]),
                                                                                     EXTERNAL_URL))
    assert (text, err) == ("L0[]", None)


def test_opsgenie_acknowledges_an_acknowledged_group() -> None:
    req = request([alert()], acknowledged=True)
    reqs = opsgenie_requests(req, OpsgenieConfig(api_url=API), build_data(req, EXTERNAL_URL))
    assert [r.method for r in reqs] == ["POST", "POST"]
    assert reqs[-1].url.startswith(API + "v2/alerts/") and reqs[-1].url.endswith("/acknowledge?identifierType=alias")
    assert reqs[-1].url.split("/")[-2] == reqs[0].body["alias"]
    plain = request([alert()])
    assert len(opsgenie_requests(plain, OpsgenieConfig(api_url=API), build_data(plain, EXTERNAL_URL))) == 1
