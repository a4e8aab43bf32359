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
{{- $elect := .Values.operator.leaderElection }}
{{- if and .Values.ha.enabled (not $elect.enabled) }}
{{- fail "ha.enabled requires operator.leaderElection.enabled=true: without it every replica would act" }}
{{- end }}
{{- if and (gt (int .Values.operator.replicas) 1) (not $elect.enabled) }}
{{- fail "operator.replicas > 1 requires operator.leaderElection.enabled=true: without it every replica would act" }}
{{- end }}
{{- if and (eq (include "frugal.operatorStrategy" .) "RollingUpdate") (not $elect.enabled) }}
{{- fail "operator.strategy=RollingUpdate requires operator.leaderElection.enabled=true: old and new pod would act at once" }}
{{- end }}
{{- if and $elect.enabled (not (gt (float64 $elect.leaseDurationSeconds) (float64 $elect.renewDeadlineSeconds))) }}
{{- fail "operator.leaderElection: leaseDurationSeconds must exceed renewDeadlineSeconds, or two replicas could act at once" }}
{{- end }}
{{- if and (gt (int .Values.operator.replicas) 1) (eq .Values.operator.strategy "Recreate") (not .Values.ha.enabled) }}
{{- fail "operator.replicas > 1 needs operator.strategy=RollingUpdate (or ha.enabled=true)" }}
{{- end }}
{{- end }}

{{/* The operator's settings: values.settings, plus where the gateway's ConfigMaps are when the
chart runs the gateway (the operator renders frugal-gateway from the cluster's policies on top of
the static frugal-gateway-base the chart provides). */}}
{{- define "frugal.settings" -}}
{{- $settings := deepCopy (.Values.settings | default dict) }}
{{- if .Values.gateway.enabled }}
{{- $gateway := dict "configNamespace" .Release.Namespace "configMap" (include "frugal.gatewayName" .) "baseConfigMap" (printf "%s-base" (include "frugal.gatewayName" .)) }}
{{- $_ := set $settings "gateway" (merge $gateway (get $settings "gateway" | default dict)) }}
{{- end }}
{{- toYaml $settings }}
{{- end }}

{{/* RBAC rules --------------------------------------------------------------------------- */}}

{{/* What the operator does inside a namespace it watches (see operator/frugal/controller/). */}}
{{- define "frugal.operatorNamespacedRules" -}}
# Reconcile the three kinds; kopf patches its finalizer (timers need one) and writes status.
- apiGroups: [frugal.dev]
  resources: [inferenceendpoints, routingpolicies, cachepolicies]
  verbs: [get, list, watch, patch]
- apiGroups: [frugal.dev]
  resources: [inferenceendpoints/status, routingpolicies/status, cachepolicies/status]
  verbs: [get, patch]
# Children carry a controller ownerReference with blockOwnerDeletion.
- apiGroups: [frugal.dev]
  resources: [inferenceendpoints/finalizers]
  verbs: [update]
# Children: server-side apply (patch; create when new), prune (delete), and watch (the
# reconciler keeps an index of every child, and of Deployments' readiness).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# Decisions a user should see.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# Engine pods: unschedulable spot pods mean spot capacity is gone (fall back to on-demand).
# With Karpenter, the operator also removes karpenter.sh/do-not-disrupt from an engine pod once
# its model has loaded (settings.nodePools.protectLoading, on by default).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch{{ if include "frugal.releasesLoadingPods" . }}, patch{{ end }}]
{{- end }}

{{- define "frugal.releasesLoadingPods" -}}
{{- if and (eq (dig "profile" "plain" .Values.settings) "karpenter") (dig "nodePools" "protectLoading" true .Values.settings) }}true{{ end }}
{{- end }}

{{- define "frugal.managesNodePools" -}}
{{- if and (eq (dig "profile" "plain" .Values.settings) "karpenter") (dig "nodePools" "manage" false .Values.settings) }}true{{ end }}
{{- end }}

{{/* What the gateway does inside a namespace it serves: its configuration comes from a file
(the ConfigMap the operator renders); its only API call wakes an endpoint scaled to zero by
setting the frugal.dev/wake annotation (a merge patch). */}}
{{- define "frugal.gatewayNamespacedRules" -}}
- apiGroups: [frugal.dev]
  resources: [inferenceendpoints]
  verbs: [patch]
{{- end }}

{{/* Egress every frugal pod needs when egress is restricted. */}}
{{- define "frugal.egressRules" -}}
# DNS
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
# The Kubernetes API server
- ports:
    {{- range .Values.networkPolicy.egress.apiServerPorts }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- with .Values.networkPolicy.egress.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}
