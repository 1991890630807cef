{{/* The chart name, or nameOverride. */}}
{{- define "secret-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". Truncated to 63 characters (DNS labels).
*/}}
{{- define "secret-bridge.fullname" -}}
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

{{- define "secret-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secret-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secret-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "secret-bridge.labels" -}}
helm.sh/chart: {{ include "secret-bridge.chart" . }}
{{ include "secret-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The ServiceAccount the controller runs as. */}}
{{- define "secret-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "secret-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "secret-bridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/* Fails on values the controller would reject at start, so that a bad install fails early. */}}
{{- define "secret-bridge.validate" -}}
{{- if not (has .Values.mode (list "sync" "eso-trigger")) }}
{{- fail (printf "mode must be sync or eso-trigger, not %q" (toString .Values.mode)) }}
{{- end }}
{{- if and (eq .Values.mode "eso-trigger") (not .Values.queueUrl) }}
{{- fail "mode eso-trigger needs queueUrl: accelerator mode only acts on events" }}
{{- end }}
{{- if not (has .Values.logFormat (list "text" "json")) }}
{{- fail (printf "logFormat must be text or json, not %q" (toString .Values.logFormat)) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount above 1 needs leaderElection.enabled: replicas without it write the same Secrets at once, and an older value can win" }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- $set := 0 }}
{{- range $key := list "minAvailable" "maxUnavailable" }}
{{- $value := get $.Values.podDisruptionBudget $key }}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
{{- $set = add1 $set }}
{{- end }}
{{- end }}
{{- if ne (int $set) 1 }}
{{- fail "podDisruptionBudget: set exactly one of minAvailable and maxUnavailable" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
IRSA (`auth.jwt.serviceAccountRef`): a token for the named ServiceAccount, exchanged with STS
AssumeRoleWithWebIdentity; the role comes from the ServiceAccount's
eks.amazonaws.com/role-arn annotation, as in ESO.
*/}}
{{- define "secret-bridge.serviceAccountTokenRules" -}}
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
  {{- with .Values.rbac.serviceAccountTokens.serviceAccountNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
  {{- with .Values.rbac.serviceAccountTokens.serviceAccountNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
{{- end }}
