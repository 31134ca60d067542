{{/*
Names: a release called `relay` (helm install relay charts/relay -n relay) gives the names the kustomize base
uses (Deployment, Service and Secret `relay`, ConfigMap `relay-routes`, claim `relay-data`), so the README's
URL http://relay.relay.svc:8080/webhook holds for both.
*/}}
{{- define "relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "relay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "relay.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "relay.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret relay's tokens and provider secrets come from: yours, or the one the chart makes. */}}
{{- define "relay.secretName" -}}
{{- default (include "relay.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "relay.postgres" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{- define "relay.databaseSecretName" -}}
{{- default (printf "%s-database" (include "relay.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "relay.routesConfigMap" -}}
{{- default (printf "%s-routes" (include "relay.fullname" .)) .Values.routes.existingConfigMap }}
{{- end }}

{{- define "relay.templatesConfigMap" -}}
{{- default (printf "%s-templates" (include "relay.fullname" .)) .Values.templates.existingConfigMap }}
{{- end }}

{{- define "relay.claimName" -}}
{{- default (printf "%s-data" (include "relay.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* A template's path as a ConfigMap key, which cannot hold "/": slack/title.j2 -> slack-title.j2. */}}
{{- define "relay.templateKey" -}}
{{- . | replace "/" "-" }}
{{- end }}

{{/*
Refusals at render time, each one clear line: what a chart cannot fix at run time must not install.
*/}}
{{- define "relay.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "relay.postgres" .)) }}
{{- fail (printf "replicaCount is %d but relay keeps its outbox in SQLite, which one process may own: set database.url or database.existingSecret (PostgreSQL) for several replicas" (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.database.url .Values.database.existingSecret }}
{{- fail "set database.url or database.existingSecret, not both" }}
{{- end }}
{{- if and .Values.routes.config .Values.routes.existingConfigMap }}
{{- fail "set routes.config or routes.existingConfigMap, not both" }}
{{- end }}
{{- if and .Values.templates.files .Values.templates.existingConfigMap }}
{{- fail "set templates.files or templates.existingConfigMap, not both" }}
{{- end }}
{{- if and .Values.templates.existingConfigMap (not .Values.templates.items) }}
{{- fail "templates.existingConfigMap needs templates.items: which key is which template path (ConfigMap keys cannot hold \"/\")" }}
{{- end }}
{{- if and .Values.existingSecret (ne (len (compact (values .Values.secrets))) 0) }}
{{- fail "existingSecret is set, so the chart makes no Secret: put those values in your Secret and leave secrets.* empty" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled .Values.serviceMonitor.enabled (not (contains "relay" (include "relay.fullname" .))) }}
{{- fail (printf "relay's rules select job=~\".*relay.*\", the job the ServiceMonitor names after the Service, and %q does not match: RelayDown would page for a relay that is scraped fine. Keep \"relay\" in the name, or set prometheusRule.enabled=false and adapt deploy/prometheus/relay-rules.yml" (include "relay.fullname" .)) }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.enabled needs ingress.host: the name Slack's interactivity request URL points at" }}
{{- end }}
{{- end }}
