{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "frugal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "frugal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "frugal.operatorName" -}}
{{- printf "%s-operator" (include "frugal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "frugal.gatewayName" -}}
{{- printf "%s-gateway" (include "frugal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "frugal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "frugal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "frugal.gatewayServiceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "frugal.gatewayName" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels ------------------------------------------------------------------------------ */}}

{{- define "frugal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "frugal.labels" -}}
helm.sh/chart: {{ include "frugal.chart" . }}
app.kubernetes.io/name: {{ include "frugal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: frugal
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; call with (dict "ctx" $ "component" "operator"). Never change them: a
Deployment's selector is immutable. */}}
{{- define "frugal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "frugal.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "frugal.componentLabels" -}}
{{ include "frugal.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Images ------------------------------------------------------------------------------ */}}

{{- define "frugal.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "frugal.gatewayImage" -}}
{{- if or .Values.gateway.image.repository .Values.gateway.image.tag }}
{{- printf "%s:%s" (default .Values.image.repository .Values.gateway.image.repository) (default .Chart.AppVersion .Values.gateway.image.tag) }}
{{- else }}
{{- include "frugal.image" . }}
{{- end }}
{{- end }}

{{/* Operator behaviour ------------------------------------------------------------------ */}}

{{- define "frugal.operatorReplicas" -}}
{{- if .Values.ha.enabled }}{{ max 2 .Values.operator.replicas }}{{ else }}{{ .Values.operator.replicas }}{{ end }}
{{- end }}

{{- define "frugal.operatorStrategy" -}}
{{- if .Values.ha.enabled }}RollingUpdate{{ else }}{{ .Values.operator.strategy }}{{ end }}
{{- end }}

{{- define "frugal.validate" -}}
{{- if and .Values.ha.enabled (not .Values.operator.peering) }}
{{- fail "ha.enabled requires operator.peering=true: without peering every replica would act" }}
{{- end }}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.peering) }}
{{- fail "operator.replicas > 1 requires operator.peering=true: without peering every replica would act" }}
{{- end }}
{{- if and (gt (int .Values.operator.replicas) 1) (eq .Values.operator.strategy "Recreate") (not .Values.ha.enabled) }}
{{- fail "operator.replicas > 1 needs operator.strategy=RollingUpdate (or ha.enabled=true)" }}
{{- end }}
{{- if has .Release.Namespace .Values.watchNamespaces | and false }}{{ end }}
{{- end }}

{{/* Where the gateway's readable Secrets live. */}}
{{- define "frugal.secretNamespaces" -}}
{{- $ns := .Values.gateway.secretNamespaces }}
{{- if not $ns }}{{ $ns = .Values.watchNamespaces }}{{ end }}
{{- if not $ns }}{{ $ns = list .Release.Namespace }}{{ end }}
{{- toJson (uniq $ns) }}
{{- end }}
