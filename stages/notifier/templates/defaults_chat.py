# ruff: noqa: E501  (the template texts are data, kept line for line)
"""Default templates of the chat integrations newer than Alertmanager 0.25.

Alertmanager's current ``default.tmpl`` defines these names for Discord's content, Microsoft
Teams (v1 and v2), Rocket.Chat and Mattermost, and the Markdown alert list they share;
0.25's text (``DEFAULT_TMPL``) has none of them. Kept line for line as Alertmanager writes
them, so that a user template redefining one of them replaces it as in Alertmanager.
"""

from __future__ import annotations

__all__ = ["CHAT_TMPL"]

CHAT_TMPL = (
    '{{ define "__text_alert_list_markdown" }}{{ range . }}\n'
    'Labels:\n'
    '{{ range .Labels.SortedPairs }}  - {{ .Name }} = {{ .Value }}\n'
    '{{ end }}\n'
    'Annotations:\n'
    '{{ range .Annotations.SortedPairs }}  - {{ .Name }} = {{ .Value }}\n'
    '{{ end }}\n'
    'Source: {{ .GeneratorURL }}\n'
    '{{ end }}\n'
    '{{ end }}\n'
    '\n'
    '{{ define "discord.default.content" }}{{ end }}\n'
    '\n'
    '{{ define "msteams.default.summary" }}{{ template "__subject" . }}{{ end }}\n'
    '{{ define "msteams.default.title" }}{{ template "__subject" . }}{{ end }}\n'
    '{{ define "msteams.default.text" }}\n'
    '{{ if gt (len .Alerts.Firing) 0 }}\n'
    '# Alerts Firing:\n'
    '{{ template "__text_alert_list_markdown" .Alerts.Firing }}\n'
    '{{ end }}\n'
    '{{ if gt (len .Alerts.Resolved) 0 }}\n'
    '# Alerts Resolved:\n'
    '{{ template "__text_alert_list_markdown" .Alerts.Resolved }}\n'
    '{{ end }}\n'
    '{{ end }}\n'
    '\n'
    '{{ define "msteamsv2.default.title" }}{{ template "__subject" . }}{{ end }}\n'
    '{{ define "msteamsv2.default.text" }}\n'
    '{{ if gt (len .Alerts.Firing) 0 }}\n'
    '# Alerts Firing:\n'
    '{{ template "__text_alert_list_markdown" .Alerts.Firing }}\n'
    '{{ end }}\n'
    '{{ if gt (len .Alerts.Resolved) 0 }}\n'
    '# Alerts Resolved:\n'
    '{{ template "__text_alert_list_markdown" .Alerts.Resolved }}\n'
    '{{ end }}\n'
    '{{ end }}\n'
    '\n'
    '{{ define "rocketchat.default.title" }}{{ template "__subject" . }}{{ end }}\n'
    '{{ define "rocketchat.default.alias" }}{{ template "__alertmanager" . }}{{ end }}\n'
    '{{ define "rocketchat.default.titlelink" }}{{ template "__alertmanagerURL" . }}{{ end }}\n'
    '{{ define "rocketchat.default.emoji" }}{{ end }}\n'
    '{{ define "rocketchat.default.iconurl" }}{{ end }}\n'
    '{{ define "rocketchat.default.text" }}{{ end }}\n'
    '\n'
    '{{ define "mattermost.default.color" }}{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}{{ end }}\n'
    '{{ define "mattermost.default.username" }}{{ template "__alertmanager" . }}{{ end }}\n'
    '{{ define "mattermost.default.title" }}{{ template "__subject" . }}{{ end }}\n'
    '{{ define "mattermost.default.titlelink" }}{{ template "__alertmanagerURL" . }}{{ end }}\n'
    '{{ define "mattermost.default.fallback" }}{{ template "mattermost.default.title" . }} | {{ template "mattermost.default.titlelink" . }}{{ end }}\n'
    '{{ define "mattermost.default.text" }}\n'
    '{{ if gt (len .Alerts.Firing) 0 }}\n'
    '# Alerts Firing:\n'
    '{{ template "__text_alert_list_markdown" .Alerts.Firing }}\n'
    '{{ end }}\n'
    '{{ if gt (len .Alerts.Resolved) 0 }}\n'
    '# Alerts Resolved:\n'
    '{{ template "__text_alert_list_markdown" .Alerts.Resolved }}\n'
    '{{ end }}\n'
    '{{ end }}\n'
)
