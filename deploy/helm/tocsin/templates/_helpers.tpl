{{/* chained (the default) or separate: every pod gets it as --deployment, the value recorded in
TOCSIN_META, so that it matches the streams'. */}}
{{- define "tocsin.deployment" -}}
{{- .Values.deployment | default "chained" }}
{{- end }}

{{/* The stages, in pipeline order; each is one Deployment running `tocsin run STAGE`. The chained
deployment runs rules, router and filter as one stage, chain (pipeline/application/graph.py). */}}
{{- define "tocsin.stageNames" -}}
{{- if eq (include "tocsin.deployment" .) "chained" -}}
source chain notifier api
{{- else -}}
source rules router filter notifier api
{{- end }}
{{- end }}

{{- define "tocsin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; stage objects append "-<stage>" (the longest stage name is 8 chars). */}}
{{- define "tocsin.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tocsin.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tocsin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tocsin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tocsin.labels" -}}
helm.sh/chart: {{ include "tocsin.chart" . }}
{{ include "tocsin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tocsin
{{- end }}

{{/* Labels of one stage's objects: call with (dict "ctx" $ "stage" NAME). */}}
{{- define "tocsin.stageSelectorLabels" -}}
{{ include "tocsin.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .stage }}
{{- end }}

{{- define "tocsin.stageLabels" -}}
{{ include "tocsin.labels" .ctx }}
app.kubernetes.io/component: {{ .stage }}
{{- end }}

{{- define "tocsin.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "tocsin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tocsin.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tocsin.apiServiceName" -}}
{{- default (include "tocsin.fullname" .) .Values.service.name }}
{{- end }}

{{- define "tocsin.configMapName" -}}
{{- printf "%s-config" (include "tocsin.fullname" .) }}
{{- end }}

{{- define "tocsin.receiverSecretName" -}}
{{- default (printf "%s-receivers" (include "tocsin.fullname" .)) .Values.receiverSecrets.existingSecret }}
{{- end }}

{{- define "tocsin.hasReceiverSecret" -}}
{{- if or .Values.receiverSecrets.existingSecret .Values.receiverSecrets.data }}true{{ end }}
{{- end }}

{{- define "tocsin.postgresSecretName" -}}
{{- default (printf "%s-postgres" (include "tocsin.fullname" .)) .Values.postgres.existingSecret }}
{{- end }}

{{- define "tocsin.postgresSecretKey" -}}
{{- if .Values.postgres.existingSecret }}{{ .Values.postgres.existingSecretKey }}{{ else }}dsn{{ end }}
{{- end }}

{{/* The NATS chart's service: its fullname rule (the release name when it contains "nats"). */}}
{{- define "tocsin.natsServiceName" -}}
{{- if .Values.nats.fullnameOverride }}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains "nats" .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-nats" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tocsin.natsUrl" -}}
{{- $url := .Values.nats.url }}
{{- if .Values.nats.enabled }}
{{- $url = printf "nats://%s.%s.svc:4222" (include "tocsin.natsServiceName" .) .Release.Namespace }}
{{- end }}
{{- if .Values.nats.credentialsSecret.name }}
{{- /* Kubernetes expands $(VAR) from the env entries before it (the Secret's user and password). */}}
{{- $url = regexReplaceAll "^([a-z]+://)" $url "${1}$(TOCSIN_NATS_USER):$(TOCSIN_NATS_PASSWORD)@" }}
{{- end }}
{{- $url }}
{{- end }}

{{/* JetStream R: explicit, else the subchart's cluster size, else 1. */}}
{{- define "tocsin.streamReplicas" -}}
{{- if not (kindIs "invalid" .Values.nats.streamReplicas) }}
{{- .Values.nats.streamReplicas | int }}
{{- else if and .Values.nats.enabled .Values.nats.config.cluster.enabled }}
{{- .Values.nats.config.cluster.replicas | int }}
{{- else }}1
{{- end }}
{{- end }}

{{/* Settings that cannot work, caught at render time with a message naming the value. */}}
{{- define "tocsin.validate" -}}
{{- if and (not .Values.nats.enabled) (not .Values.nats.url) (not .Values.nats.urlSecret.name) }}
{{- fail "nats: set nats.url or nats.urlSecret.name (an existing NATS), or nats.enabled=true (the NATS subchart)" }}
{{- end }}
{{- if and .Values.stages.source.enabled (not .Values.postgres.dsn) (not .Values.postgres.existingSecret) }}
{{- fail "stages.source.enabled needs postgres.existingSecret (or postgres.dsn) (the source reads Postgres' change stream)" }}
{{- end }}
{{- /* Credentials never in plain values: they would be stored in the release and shown in the pod spec. */}}
{{- if regexMatch "^[a-z]+://[^/]*@" (.Values.nats.url | default "") }}
{{- fail "nats.url holds credentials: put the user and password in a Secret (nats.credentialsSecret.name), or the whole URL (nats.urlSecret.name)" }}
{{- end }}
{{- if and .Values.nats.credentialsSecret.name .Values.nats.urlSecret.name }}
{{- fail "set one of nats.credentialsSecret.name and nats.urlSecret.name (the URL in urlSecret carries its own credentials)" }}
{{- end }}
{{- if and .Values.postgres.dsn (not .Values.postgres.existingSecret) (or (regexMatch "^[a-z]+://[^/@]*:[^/@]*@" .Values.postgres.dsn) (regexMatch "(^|[ ?&])password=" .Values.postgres.dsn)) }}
{{- fail "postgres.dsn holds a password: put the DSN in a Secret (key dsn) and set postgres.existingSecret to its name" }}
{{- end }}
{{- if and .Values.nats.tlsSecret.certKey (not .Values.nats.tlsSecret.keyKey) }}
{{- fail "nats.tlsSecret.certKey needs nats.tlsSecret.keyKey (the client certificate's private key)" }}
{{- end }}
{{- if and .Values.nats.enabled .Values.nats.config.cluster.enabled }}
{{- if gt (include "tocsin.streamReplicas" . | int) (.Values.nats.config.cluster.replicas | int) }}
{{- fail (printf "nats.streamReplicas (%s) exceeds the NATS cluster size nats.config.cluster.replicas (%v)" (include "tocsin.streamReplicas" .) .Values.nats.config.cluster.replicas) }}
{{- end }}
{{- end }}
{{- range $name := splitList " " (include "tocsin.stageNames" .) }}
{{- $a := (index $.Values.stages $name).autoscaling }}
{{- if and $a.enabled (lt ($a.maxReplicas | int) ($a.minReplicas | int)) }}
{{- fail (printf "stages.%s.autoscaling: maxReplicas (%v) is below minReplicas (%v)" $name $a.maxReplicas $a.minReplicas) }}
{{- end }}
{{- end }}
{{- if and .Values.nats.enabled (not .Values.nats.config.cluster.enabled) (gt (include "tocsin.streamReplicas" . | int) 1) }}
{{- fail "nats.streamReplicas above 1 needs nats.config.cluster.enabled (a single NATS server holds one replica)" }}
{{- end }}
{{- end }}
