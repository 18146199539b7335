"""Telegram: ``sendMessage`` of the Bot API (Alertmanager's ``notify/telegram``).

The request is what Alertmanager's Telegram client sends: ``POST {api_url}/bot{token}/
sendMessage`` with string-valued JSON parameters, link previews off. With ``parse_mode:
HTML`` the message is rendered with HTML escaping, and a message over Telegram's 4096
characters is replaced by Alertmanager's notice (cutting HTML could break its tags);
otherwise it is cut to 4096 characters ending with ``…``.

The Bot API answers ``{"ok": false, "error_code": N, "description": ...}``: the error code
is classified like an HTTP status (429 is retried after ``parameters.retry_after``, 5xx
retried, other 4xx permanent). Alertmanager retries every failed request, even a 400 or a
401 that cannot succeed. Telegram has no idempotency key.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import TelegramConfig

from ..classify import Outcome, Verdict, classify_status
from ..delivery import Sender
from ..payloads import Fields, truncate_runes
from ..secrets import SecretError
from ..templates import Data, TemplateSet
from ._chat import ChatSender, log, render

__all__ = [
    "MAX_MESSAGE_RUNES",
    "TOO_LONG_HTML",
    "TelegramSender",
    "api_outcome",
    "build",
    "send_message_url",
    "telegram_message",
    "telegram_payload",
]

MAX_MESSAGE_RUNES = 4096
# Alertmanager's text, including the indentation of its source line
TOO_LONG_HTML = ("Alertmanager notification could not be sent: message length exceeds Telegram limits.\n"
                 "\t\t\tPlease check the template used for producing the message content.")
_ERROR_TEXT = 256


def send_message_url(api_url: str, token: str) -> str:
    return f"{api_url.rstrip('/')}/bot{token}/sendMessage"


def telegram_message(cfg: TelegramConfig, data: Data, *, templates: TemplateSet | None = None,
                     errors: list[str] | None = None) -> str:
    f = Fields("telegram", data, templates, errors)
    if cfg.parse_mode == "HTML":
        text = render(f, "message", cfg.message, "telegram.default.message", html=True)
        if len(text) > MAX_MESSAGE_RUNES:
            log.warning("telegram: HTML message over %d characters replaced by a notice", MAX_MESSAGE_RUNES)
            return TOO_LONG_HTML
        return text
    text, cut = truncate_runes(render(f, "message", cfg.message, "telegram.default.message"), MAX_MESSAGE_RUNES)
    if cut:
        log.warning("telegram: message truncated to %d characters", MAX_MESSAGE_RUNES)
    return text


def telegram_payload(cfg: TelegramConfig, data: Data, chat_id: int, *, templates: TemplateSet | None = None,
                     errors: list[str] | None = None) -> dict[str, str]:
    """The ``sendMessage`` parameters; every value a string, as Alertmanager's client sends them."""
    body = {"chat_id": str(chat_id), "text": telegram_message(cfg, data, templates=templates, errors=errors)}
    if cfg.parse_mode:
        body["parse_mode"] = cfg.parse_mode
    body["disable_web_page_preview"] = "true"
    if cfg.disable_notifications:
        body["disable_notification"] = "true"
    if cfg.message_thread_id:
        body["message_thread_id"] = str(cfg.message_thread_id)
    return body


def api_outcome(status: int, body: bytes) -> Outcome:
    """The outcome of a Bot API answer (pure): its ``ok``, else its ``error_code``."""
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        answer = None
    if not isinstance(answer, dict):
        text = body[:_ERROR_TEXT].decode("utf-8", "replace").strip()
        verdict = classify_status(status) if status >= 300 else Verdict(False, True, "other")
        return Outcome(verdict, f"Telegram answered {status} without a Bot API result: {text!r}", status)
    if answer.get("ok") is True:
        return Outcome(Verdict(True, False, ""), "", status)
    code = answer.get("error_code")
    code = code if isinstance(code, int) and code >= 400 else (status if status >= 400 else 500)
    retry_after: float | None = None
    params = answer.get("parameters")
    if isinstance(params, dict) and isinstance(params.get("retry_after"), int | float):
        retry_after = float(params["retry_after"])
    return Outcome(classify_status(code), f"Telegram error {code}: {answer.get('description', '')}", status,
                   retry_after)


class TelegramSender(ChatSender):
    kind = "telegram"
    cfg: TelegramConfig

    def chat_id(self) -> int:
        if not self.cfg.chat_id_file:
            return self.cfg.chat_id
        text = self.secrets.read_file(self.cfg.chat_id_file, f"{self.what}: chat_id_file")
        try:
            return int(text)
        except ValueError:
            raise SecretError(f"{self.what}: {self.cfg.chat_id_file} does not hold a chat id (an integer)") from None

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        token = self.secrets.resolve(cfg.bot_token, cfg.bot_token_file, f"{self.what}: bot_token")
        if not token:
            return Outcome(Verdict(False, False, "other"), f"{self.what}: no bot token; set bot_token or "
                           "bot_token_file (or telegram_bot_token in global)")
        errors: list[str] = []
        body = telegram_payload(cfg, self.data(req), self.chat_id(), templates=self.templates, errors=errors)
        self.log_errors(errors)
        resp = await self.post(send_message_url(cfg.api_url, token), msgspec.json.encode(body))
        return api_outcome(resp.status, resp.body)


def build(cfg: TelegramConfig, **kw: Any) -> Sender:
    return TelegramSender(cfg, **kw)
