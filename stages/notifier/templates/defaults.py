"""Default notification templates: Alertmanager's ``default.tmpl`` and ``email.tmpl`` in Jinja2.

Each entry is a named template, under Alertmanager's name, that a custom template can call
with ``template("name")`` (Go: ``{{ template "name" . }}``). Inside a named template the
data's fields are top-level names and ``dot`` is the value it was called with (the data
itself unless a second argument is given, as ``template("__text_alert_list", Alerts.Firing)``).
The texts reproduce Alertmanager's output character for character, except the HTML email,
which is Tocsin's own markup with the same content, and ``email.default.text``, which
Alertmanager does not have (its emails are HTML only by default).
"""

from __future__ import annotations

__all__ = ["DEFAULTS", "SENDER_NAME"]

# The product name in default texts. Kept as Alertmanager's so that mail filters and
# Slack/PagerDuty rules keyed on it keep working after a switch to Tocsin.
SENDER_NAME = "Alertmanager"

_SUBJECT = (
    '[{{ Status | toUpper }}{% if Status == "firing" %}:{{ Alerts.Firing | length }}{% endif %}] '
    '{{ GroupLabels.SortedPairs.Values | join(" ") }} '
    "{% if CommonLabels | length > GroupLabels | length %}"
    '({{ CommonLabels.Remove(GroupLabels.Names).Values | join(" ") }}){% endif %}'
)

_TEXT_ALERT_LIST = (
    "{% for a in dot %}Labels:\n"
    "{% for p in a.Labels.SortedPairs %} - {{ p.Name }} = {{ p.Value }}\n"
    "{% endfor %}Annotations:\n"
    "{% for p in a.Annotations.SortedPairs %} - {{ p.Name }} = {{ p.Value }}\n"
    "{% endfor %}Source: {{ a.GeneratorURL }}\n"
    "{% endfor %}"
)

_TEXT_ALERT_LIST_MARKDOWN = (
    "{% for a in dot %}\n"
    "Labels:\n"
    "{% for p in a.Labels.SortedPairs %}  - {{ p.Name }} = {{ p.Value }}\n"
    "{% endfor %}\n"
    "Annotations:\n"
    "{% for p in a.Annotations.SortedPairs %}  - {{ p.Name }} = {{ p.Value }}\n"
    "{% endfor %}\n"
    "Source: {{ a.GeneratorURL }}\n"
    "{% endfor %}\n"
)

_EMAIL_TEXT = (
    '{{ template("__subject") }}\n'
    "{% if Alerts.Firing %}\n"
    "Alerts Firing:\n"
    '{{ template("__text_alert_list", Alerts.Firing) }}'
    "{% endif %}"
    "{% if Alerts.Resolved %}\n"
    "Alerts Resolved:\n"
    '{{ template("__text_alert_list", Alerts.Resolved) }}'
    "{% endif %}\n"
    'View in {{ template("__alertmanager") }}: {{ template("__alertmanagerURL") }}\n'
)

_FONT = "font-family: 'Helvetica Neue', Helvetica, Arial, sans-serif; font-size: 14px;"

_EMAIL_HTML = (
    "{% macro alert_block(a) %}"
    '<tr><td style="padding: 0 0 20px; vertical-align: top;">'
    "<strong>Labels</strong><br>\n"
    "{% for p in a.Labels.SortedPairs %}{{ p.Name }} = {{ p.Value }}<br>\n{% endfor %}"
    "{% if a.Annotations %}<strong>Annotations</strong><br>\n"
    "{% for p in a.Annotations.SortedPairs %}{{ p.Name }} = {{ p.Value }}<br>\n{% endfor %}{% endif %}"
    '<a href="{{ a.GeneratorURL }}" style="color: #348eda; text-decoration: underline;">Source</a><br>\n'
    "</td></tr>\n"
    "{% endmacro %}"
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml">\n'
    "<head>\n"
    '<meta name="viewport" content="width=device-width">\n'
    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">\n'
    '<title>{{ template("__subject") }}</title>\n'
    "</head>\n"
    f'<body style="margin: 0; background-color: #f6f6f6; line-height: 1.6em; {_FONT}">\n'
    '<table width="100%" cellpadding="0" cellspacing="0" style="background-color: #f6f6f6;">\n'
    '<tr><td align="center" style="padding: 20px;">\n'
    '<table width="600" cellpadding="0" cellspacing="0" style="max-width: 600px; background-color: #fff;'
    ' border: 1px solid #e9e9e9; border-radius: 3px;">\n'
    '<tr><td align="center" style="padding: 20px; color: #fff; font-size: 16px; font-weight: 500;'
    " border-radius: 3px 3px 0 0;"
    ' background-color: {% if Alerts.Firing %}#E6522C{% else %}#68B90F{% endif %};">\n'
    "{{ Alerts | length }} alert{% if Alerts | length > 1 %}s{% endif %} for"
    "{% for p in GroupLabels.SortedPairs %} {{ p.Name }}={{ p.Value }}{% endfor %}\n"
    "</td></tr>\n"
    '<tr><td style="padding: 30px;">\n'
    '<table width="100%" cellpadding="0" cellspacing="0">\n'
    '<tr><td style="padding: 0 0 20px;">'
    '<a href="{{ template("__alertmanagerURL") }}" style="display: inline-block; color: #fff;'
    " background-color: #348eda; border: solid #348eda; border-width: 10px 20px; border-radius: 5px;"
    ' font-weight: bold; text-decoration: none;">View in {{ template("__alertmanager") }}</a>'
    "</td></tr>\n"
    "{% if Alerts.Firing %}"
    '<tr><td style="padding: 0 0 20px;"><strong>[{{ Alerts.Firing | length }}] Firing</strong></td></tr>\n'
    "{% for a in Alerts.Firing %}{{ alert_block(a) }}{% endfor %}"
    "{% endif %}"
    "{% if Alerts.Resolved %}"
    '{% if Alerts.Firing %}<tr><td style="padding: 0 0 20px;"><hr></td></tr>\n{% endif %}'
    '<tr><td style="padding: 0 0 20px;"><strong>[{{ Alerts.Resolved | length }}] Resolved</strong></td></tr>\n'
    "{% for a in Alerts.Resolved %}{{ alert_block(a) }}{% endfor %}"
    "{% endif %}"
    "</table>\n"
    "</td></tr>\n"
    "</table>\n"
    '<p style="color: #999; font-size: 12px; text-align: center;">'
    '<a href="{{ ExternalURL }}" style="color: #999;">Sent by {{ template("__alertmanager") }}</a></p>\n'
    "</td></tr>\n"
    "</table>\n"
    "</body>\n"
    "</html>\n"
)

_FIRING_OR_GOOD = '{% if Status == "firing" %}danger{% else %}good{% endif %}'

DEFAULTS: dict[str, str] = {
    "__alertmanager": SENDER_NAME,
    "__alertmanagerURL": "{{ ExternalURL }}/#/alerts?receiver={{ Receiver | urlquery }}",
    "__subject": _SUBJECT,
    "__description": "",
    "__text_alert_list": _TEXT_ALERT_LIST,
    "__text_alert_list_markdown": _TEXT_ALERT_LIST_MARKDOWN,
    "slack.default.title": '{{ template("__subject") }}',
    "slack.default.username": '{{ template("__alertmanager") }}',
    "slack.default.fallback": '{{ template("slack.default.title") }} | {{ template("slack.default.titlelink") }}',
    "slack.default.callbackid": "",
    "slack.default.pretext": "",
    "slack.default.titlelink": '{{ template("__alertmanagerURL") }}',
    "slack.default.iconemoji": "",
    "slack.default.iconurl": "",
    "slack.default.text": "",
    "slack.default.footer": "",
    "slack.default.color": _FIRING_OR_GOOD,
    "pagerduty.default.description": '{{ template("__subject") }}',
    "pagerduty.default.client": '{{ template("__alertmanager") }}',
    "pagerduty.default.clientURL": '{{ template("__alertmanagerURL") }}',
    "pagerduty.default.instances": '{{ template("__text_alert_list", dot) }}',
    "email.default.subject": '{{ template("__subject") }}',
    "email.default.html": _EMAIL_HTML,
    "email.default.text": _EMAIL_TEXT,
}
