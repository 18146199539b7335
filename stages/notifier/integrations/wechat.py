"""WeChat Work (``notify/wechat`` in Alertmanager): an app message through ``message/send``.

As Alertmanager: an access token is fetched with ``GET {api_url}gettoken?corpid=&corpsecret=``
and kept by the integration for two hours (less when WeChat's ``expires_in`` says so); the
message is then posted to ``{api_url}message/send?access_token=``. WeChat answers errors
with HTTP 200 and an ``errcode``: 0 is success; 42001 (token expired) drops the token and
retries; -1 (system busy) retries; any other code is final. A non-200 answer to the send is
retried whatever its status, as Alertmanager does. WeChat has no idempotency key (its
``enable_duplicate_check`` is by content and would swallow repeat notifications).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import WechatConfig

from ..classify import Outcome, Verdict, permanent
from ..delivery import Sender
from ..http import HttpSender, http_outcome
from ..payloads.common import Fields
from ..templates import Data, TemplateSet, build_data
from ._incident import join_url, render_secret, request

__all__ = ["TOKEN_TTL", "WechatSender", "build", "wechat_message"]

log = logging.getLogger("tocsin.notifier")

TOKEN_TTL = 7200.0  # Alertmanager refreshes the token after 2 hours
_TOKEN_MARGIN = 300.0  # refresh this much before WeChat's own expires_in
_EXPIRED = 42001
_BUSY = -1


def wechat_message(cfg: WechatConfig, data: Data, *, templates: TemplateSet | None = None,
                   errors: list[str] | None = None) -> dict[str, Any]:
    """The JSON body of ``message/send``, with Alertmanager's keys: ``text`` and ``markdown``
    are both always present (Go's ``omitempty`` keeps structs), the other one empty."""
    f = Fields("wechat", data, templates, errors)
    content = f.text("message", cfg.message, "wechat.default.message")
    kind = cfg.message_type or "text"
    msg: dict[str, Any] = {"text": {"content": content if kind != "markdown" else ""}}
    for key, field, default in (("touser", "to_user", "wechat.default.to_user"),
                                ("toparty", "to_party", "wechat.default.to_party"),
                                ("totag", "to_tag", "wechat.default.to_tag"),
                                ("agentid", "agent_id", "wechat.default.agent_id")):
        value = f.text(field, getattr(cfg, field), default)
        if value:
            msg[key] = value
    msg["safe"] = "0"
    msg["msgtype"] = kind
    msg["markdown"] = {"content": content if kind == "markdown" else ""}
    return msg


def _answer(body: bytes) -> dict[str, Any] | None:
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _code(doc: dict[str, Any]) -> int:
    code = doc.get("errcode", 0)
    return code if isinstance(code, int) else -2


class WechatSender(HttpSender):
    kind = "wechat"

    def __init__(self, cfg: WechatConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg
        self.token = ""
        self.token_until = 0.0
        self._lock = asyncio.Lock()  # one token fetch at a time; the others reuse it

    async def _token(self, data: Data, now: float) -> str | Outcome:
        async with self._lock:
            if self.token and now < self.token_until:
                return self.token
            cfg = self.cfg
            secret = self.secrets.resolve(cfg.api_secret, cfg.api_secret_file, f"{self.what}: api_secret")
            query = [("corpsecret", render_secret(self, secret, data, "api_secret")),
                     ("corpid", render_secret(self, cfg.corp_id, data, "corp_id"))]
            resp = await request(self, "GET", join_url(cfg.api_url, "gettoken", query))
            out = http_outcome(resp, now)
            if not out.ok:
                return out
            doc = _answer(resp.body)
            if doc is None:
                return permanent(f"{self.what}: WeChat gettoken answered something else than JSON")
            token = doc.get("access_token")
            if not isinstance(token, str) or not token:
                code = _code(doc)
                error = (f"{self.what}: invalid APISecret for CorpID: {cfg.corp_id} "
                         f"(errcode {code}: {str(doc.get('errmsg', ''))[:200]})")
                return Outcome(Verdict(False, code == _BUSY, "other"), error, resp.status)
            expires = doc.get("expires_in")
            ttl = TOKEN_TTL
            if isinstance(expires, int | float) and expires > 0:
                ttl = min(ttl, max(float(expires) - _TOKEN_MARGIN, 0.0))
            self.token, self.token_until = token, now + ttl
            return token

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        if not cfg.api_url:
            return permanent(f"{self.what}: no api_url")
        data = build_data(req, self.external_url)
        token = await self._token(data, now)
        if isinstance(token, Outcome):
            return token
        errors: list[str] = []
        body = wechat_message(cfg, data, templates=self.templates, errors=errors)
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        url = join_url(cfg.api_url, "message/send", [("access_token", token)])
        resp = await request(self, "POST", url, msgspec.json.encode(body))
        out = http_outcome(resp, now)
        if not out.ok:  # Alertmanager retries any answer but 200
            return out._replace(verdict=out.verdict._replace(retryable=True))
        doc = _answer(resp.body)
        if doc is None:
            return Outcome(Verdict(False, True, "other"), "WeChat answered something else than JSON", resp.status)
        code = _code(doc)
        if code == 0:
            return out
        error = f"WeChat errcode {code}: {str(doc.get('errmsg', ''))[:200]}"
        if code == _EXPIRED:
            async with self._lock:
                if self.token == token:
                    self.token = ""
        return Outcome(Verdict(False, code in (_EXPIRED, _BUSY), "other"), error, resp.status)


def build(cfg: WechatConfig, **kw: Any) -> Sender:
    return WechatSender(cfg, **kw)
