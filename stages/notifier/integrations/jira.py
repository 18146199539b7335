"""Jira issues, one per alert group (Alertmanager's notify/jira).

Each send searches the project for the group's issue, found by its label
``ALERT{<group hash>}`` (the hash Alertmanager uses, so issues opened by an Alertmanager
are found after a switch to Tocsin). No issue: one is created (``POST issue``), except for
a resolved group; an issue: it is updated (``PUT issue/<key>``, ``summary`` and
``description`` left out when their ``enable_update`` is false), then moved with
``reopen_transition`` (a firing group whose issue is done) or ``resolve_transition``
(a resolved group whose issue is not). With ``reopen_duration``, issues resolved within that
time are reopened rather than replaced; ``wont_fix_resolution`` keeps issues closed with
that resolution closed.

The search is ``POST /search`` (REST API v2, Jira Data Center) or ``POST /rest/api/3/search/jql``
(Jira Cloud: ``api_type: cloud``, or ``auto`` with an ``atlassian.net`` host). An ``api_url``
ending in ``/3`` means API v3: the description must then render to Atlassian Document
Format JSON. Authentication is ``http_config``'s (basic auth with an API token, or a bearer
token). 429 and 5xx are retried.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from contracts.messages import SendRequest
from pipeline.foundation.amconfig.model import JiraConfig, JiraField
from pipeline.foundation.http1 import HttpResponse

from ..classify import Outcome, Verdict, permanent
from ..delivery import Sender
from ..http import USER_AGENT, HttpSender, auth_headers, http_outcome
from ..payloads.common import Fields, truncate_runes
from ..payloads.pagerduty import pagerduty_dedup_key
from ..templates import Data, TemplateSet, build_data

__all__ = [
    "JIRA_DESCRIPTION_MAX_RUNES",
    "JIRA_SUMMARY_MAX_RUNES",
    "JiraSender",
    "build",
    "is_api_v3",
    "jira_issue",
    "jira_search",
    "search_url",
    "transition_for",
]

log = logging.getLogger("tocsin.notifier")

JIRA_SUMMARY_MAX_RUNES = 255
JIRA_DESCRIPTION_MAX_RUNES = 32767

class _JiraFields(Fields):
    """Jira's fields: a failure renders the field's Jira default (``jira.default.*``, among the
    default templates) or, for the fields with no sensible fallback, fails the send."""

    def __init__(self, data: Data, templates: TemplateSet | None, errors: list[str] | None) -> None:
        super().__init__("jira", data, templates, errors)

    def render(self, field: str, value: str) -> str:
        """``value`` rendered; a failure renders the Jira default of ``field`` (counted, logged)."""
        if "{{" not in value:
            return value
        out, err = self.templates.render(value, self.data, "")
        if err is None:
            return out
        self._error(field, err)
        default = {"summary": "jira.default.summary", "description": "jira.default.description",
                   "priority": "jira.default.priority"}.get(field)
        if default is None:
            return ""
        out, err = self.templates.render(f'{{{{ template "{default}" . }}}}', self.data, "")
        if err is not None:
            self._error(field, f"default template {default!r}: {err}")
        return out

    def exact(self, field: str, value: str) -> str:
        """A field with no sensible fallback (project, issue type, label): an error fails the send."""
        if "{{" not in value:
            return value
        out, err = self.templates.render(value, self.data, "")
        if err is not None:
            raise ValueError(f"{field} template: {err}")
        return out


def _join(base: str, path: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + path.lstrip("/")))


def is_api_v3(api_url: str) -> bool:
    return urlsplit(api_url).path.rstrip("/").endswith("/3")


def search_url(cfg: JiraConfig) -> str:
    """Where to search: v3 ``/search/jql`` on Jira Cloud, else v2 ``/search`` (as Alertmanager chooses)."""
    host = urlsplit(cfg.api_url).hostname or ""
    if cfg.api_type == "cloud" or (cfg.api_type == "auto" and host.endswith("atlassian.net")):
        return _join(cfg.api_url, "/search/jql").replace("/rest/api/2/", "/rest/api/3/", 1)
    return _join(cfg.api_url, "/search")


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # Go's %q for the texts of a JQL query


def jira_search(cfg: JiraConfig, project: str, group_hash: str, firing: bool) -> dict[str, Any]:
    """The search body for the group's issue (pure): open issues, or recently resolved ones
    when a firing group may reopen them."""
    jql = ""
    if cfg.wont_fix_resolution:
        jql += f"(resolution is EMPTY or resolution != {_go_quote(cfg.wont_fix_resolution)}) and "
    minutes = int(cfg.reopen_duration // 60)
    if firing and cfg.reopen_transition and minutes > 0:
        jql += f"(resolutiondate is EMPTY OR resolutiondate >= -{minutes}m) and "
    else:
        jql += "statusCategory != Done and "
    jql += (f"project={_go_quote(project)} and labels={_go_quote(f'ALERT{{{group_hash}}}')} "
            "order by status ASC,resolutiondate DESC")
    return {"fields": ["status"], "jql": jql, "maxResults": 2}


def jira_issue(cfg: JiraConfig, data: Data, group_hash: str, *, update: bool, templates: TemplateSet | None = None,
               errors: list[str] | None = None) -> dict[str, Any]:
    """The body of the issue create (``update`` false) or update request (pure).

    Raises ``ValueError`` when the project, issue type or a label does not render, or
    (API v3) when the description is not JSON.
    """
    f = _JiraFields(data, templates, errors)
    summary_field: JiraField = cfg.summary
    description_field: JiraField = cfg.description
    fields: dict[str, Any] = {
        "project": {"key": f.exact("project", cfg.project)},
        "issuetype": {"name": f.exact("issue_type", cfg.issue_type)},
    }
    if not update or summary_field.updates:
        summary, cut = truncate_runes(f.render("summary", summary_field.template), JIRA_SUMMARY_MAX_RUNES)
        if cut:
            log.warning("jira: summary truncated to %d characters", JIRA_SUMMARY_MAX_RUNES)
        fields["summary"] = summary
    if not update or description_field.updates:
        text, cut = truncate_runes(f.render("description", description_field.template), JIRA_DESCRIPTION_MAX_RUNES)
        if cut:
            log.warning("jira: description truncated to %d characters", JIRA_DESCRIPTION_MAX_RUNES)
        if is_api_v3(cfg.api_url):
            text = text.strip()
            if text:
                try:
                    fields["description"] = json.loads(text)
                except ValueError:
                    raise ValueError("description template: invalid JSON for API v3") from None
        elif text:
            fields["description"] = text
    labels = [f.exact(f"labels[{i}]", label) for i, label in enumerate(cfg.labels)]
    fields["labels"] = sorted([*labels, f"ALERT{{{group_hash}}}"])
    priority = f.render("priority", cfg.priority)
    if priority:
        fields["priority"] = {"name": priority}
    custom = f.value("fields", dict(cfg.fields))
    fields.update(custom)
    return {"fields": fields}


def transition_for(cfg: JiraConfig, issue: dict[str, Any], firing: bool) -> str:
    """The transition to apply to a found issue: reopen a done issue of a firing group,
    resolve an open issue of a resolved group; ``""`` for none."""
    status = (issue.get("fields") or {}).get("status")
    if not isinstance(status, dict):
        return ""
    done = (status.get("statusCategory") or {}).get("key") == "done"
    if firing:
        return cfg.reopen_transition if done else ""
    return "" if done else cfg.resolve_transition


class JiraSender(HttpSender):
    kind = "jira"

    def __init__(self, cfg: JiraConfig, **kw: Any) -> None:
        super().__init__(http=cfg.http_config, send_resolved=cfg.send_resolved, **kw)
        self.cfg = cfg

    async def _call(self, method: str, url: str, body: Any = None) -> HttpResponse:
        payload = b"" if body is None else msgspec.json.encode(body)
        headers: list[tuple[str, str]] = [("Accept-Language", "en"), ("User-Agent", USER_AGENT)]
        if body is not None:
            headers.insert(0, ("Content-Type", "application/json"))
        headers += auth_headers(self.http, self.secrets, self.what)
        return await self.client.request(method, url, headers, payload)

    def _failed(self, resp: HttpResponse, now: float, step: str) -> Outcome | None:
        out = http_outcome(resp, now)
        if out.ok:
            return None
        return out._replace(error=f"{self.what}: {step}: {out.error}")

    async def send(self, req: SendRequest, now: float) -> Outcome:
        cfg = self.cfg
        if not cfg.api_url:
            return permanent(f"{self.what}: no api_url")
        errors: list[str] = []
        data = build_data(req, self.external_url)
        firing = bool(data.Alerts.Firing)
        group_hash = pagerduty_dedup_key(req.org, req.group_key)
        f = _JiraFields(data, self.templates, errors)
        try:
            project = f.exact("project", cfg.project)
        except ValueError as exc:
            return permanent(f"{self.what}: {exc}")
        resp = await self._call("POST", search_url(cfg), jira_search(cfg, project, group_hash, firing))
        failed = self._failed(resp, now, "search for the group's issue")
        if failed is not None:
            return failed
        try:
            issues = msgspec.json.decode(resp.body).get("issues") or []
        except (msgspec.DecodeError, AttributeError):
            return permanent(f"{self.what}: search for the group's issue: the answer is not a JSON search result")
        issue: dict[str, Any] | None = issues[0] if issues and isinstance(issues[0], dict) else None
        if len(issues) > 1:
            log.warning("%s: more than one issue matched, using the most recently resolved %s", self.what,
                        issue.get("key") if issue else "?")
        if issue is None and not firing:
            return Outcome(Verdict(ok=True, retryable=False, reason=""))  # no issue to resolve: nothing to do
        update = issue is not None and bool(issue.get("key"))
        try:
            body = jira_issue(cfg, data, group_hash, update=update, templates=self.templates, errors=errors)
        except ValueError as exc:
            return permanent(f"{self.what}: {exc}")
        if errors:
            log.warning("%s: template errors: %s", self.what, "; ".join(errors))
        if issue is not None and update:
            key = str(issue["key"])
            resp = await self._call("PUT", _join(cfg.api_url, f"issue/{key}"), body)
            failed = self._failed(resp, now, f"update of {key}")
        else:
            resp = await self._call("POST", _join(cfg.api_url, "issue"), body)
            failed = self._failed(resp, now, "creation of the issue")
        if failed is not None or issue is None or not update:
            return failed or http_outcome(resp, now)
        key = str(issue["key"])
        name = transition_for(cfg, issue, firing)
        if not name:
            return http_outcome(resp, now)
        url = _join(cfg.api_url, f"issue/{key}/transitions")
        resp = await self._call("GET", url)
        failed = self._failed(resp, now, f"transitions of {key}")
        if failed is not None:
            return failed
        try:
            transitions = msgspec.json.decode(resp.body).get("transitions") or []
        except (msgspec.DecodeError, AttributeError):
            return permanent(f"{self.what}: transitions of {key}: the answer is not JSON")
        ids = [str(t.get("id", "")) for t in transitions if isinstance(t, dict) and t.get("name") == name]
        if not ids:
            return permanent(f"{self.what}: can't find transition {name} for issue {key}; check "
                             "reopen_transition / resolve_transition against the project's workflow")
        resp = await self._call("POST", url, {"transition": {"id": ids[0]}})
        return self._failed(resp, now, f"transition {name!r} of {key}") or http_outcome(resp, now)


def build(cfg: JiraConfig, **kw: Any) -> Sender:
    return JiraSender(cfg, **kw)
