{{/* Common names and labels. */}}
{{- define "tasksync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of resources that belong to no one component (the Dapr resources). */}}
{{- define "tasksync.labels" -}}
{{ include "tasksync.baseLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tasksync.baseLabels" -}}
app.kubernetes.io/part-of: tasksync
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of a component's resources: include with (dict "root" $ "component" "gateway"). */}}
{{- define "tasksync.componentLabels" -}}
{{ include "tasksync.baseLabels" .root }}
{{ include "tasksync.selectorLabels" . }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "root" $ "component" "gateway"). */}}
{{- define "tasksync.selectorLabels" -}}
app.kubernetes.io/name: tasksync-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "tasksync.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
Gateway termination grace period (docs/deploy.md "Drain arithmetic"):
preStop sleep + hub drain wait + last detach (actor call timeout) + uvicorn graceful + slack.
*/}}
{{- define "tasksync.gateway.drainSeconds" -}}
{{- $d := .Values.gateway.drain -}}
{{- add $d.preStopSleepSeconds $d.hubDrainSeconds $d.actorCallTimeoutSeconds $d.uvicornGracefulSeconds $d.slackSeconds -}}
{{- end -}}

{{- define "tasksync.gateway.terminationGracePeriodSeconds" -}}
{{- $need := include "tasksync.gateway.drainSeconds" . | int -}}
{{- $set := .Values.gateway.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $set -}}
{{- $need -}}
{{- else if lt (int $set) $need -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds=%d is below the drain time %d s (docs/deploy.md)" (int $set) $need) -}}
{{- else -}}
{{- int $set -}}
{{- end -}}
{{- end -}}

{{/*
daprd of a gateway: keep serving actor calls until the app's drain has detached every connection
(preStop + hub drain + actor call timeout), or until the app turns unhealthy, whichever is first.
*/}}
{{- define "tasksync.gateway.blockShutdownSeconds" -}}
{{- $d := .Values.gateway.drain -}}
{{- add $d.preStopSleepSeconds $d.hubDrainSeconds $d.actorCallTimeoutSeconds -}}
{{- end -}}

{{/* Dapr sidecar annotations: include with (dict "root" $ "appId" "gateway" "app" .Values.gateway). */}}
{{- define "tasksync.daprAnnotations" -}}
{{- $v := .root.Values -}}
dapr.io/enabled: "true"
dapr.io/app-id: {{ .appId | quote }}
dapr.io/app-port: {{ .app.port | quote }}
dapr.io/app-protocol: {{ $v.dapr.appProtocol | quote }}
dapr.io/config: {{ $v.dapr.config | quote }}
dapr.io/log-level: {{ $v.dapr.logLevel | quote }}
dapr.io/api-token-secret: {{ $v.secrets.daprApiToken | quote }}
dapr.io/app-token-secret: {{ $v.secrets.appApiToken | quote }}
{{- $h := mergeOverwrite (deepCopy $v.dapr.appHealth) (.app.appHealth | default dict) }}
dapr.io/enable-app-health-check: {{ $h.enabled | quote }}
dapr.io/app-health-check-path: {{ $h.path | quote }}
dapr.io/app-health-probe-interval: {{ $h.probeIntervalSeconds | quote }}
dapr.io/app-health-probe-timeout: {{ $h.probeTimeoutMs | quote }}
dapr.io/app-health-threshold: {{ $h.threshold | quote }}
dapr.io/enable-metrics: "true"
dapr.io/sidecar-seccomp-profile-type: {{ $v.dapr.sidecarSeccompProfile | quote }}
dapr.io/sidecar-cpu-request: {{ .app.sidecarResources.cpuRequest | quote }}
dapr.io/sidecar-memory-request: {{ .app.sidecarResources.memoryRequest | quote }}
dapr.io/sidecar-memory-limit: {{ .app.sidecarResources.memoryLimit | quote }}
{{- end -}}

{{/* Env shared by the app containers: Dapr tokens (same Secrets as the sidecar's) and bind address. */}}
{{- define "tasksync.appEnv" -}}
- name: APP_PORT
  value: {{ .app.port | quote }}
# Probes and the Service reach the pod IP; the Dapr callback routes stay behind APP_API_TOKEN.
- name: TASKSYNC_BIND
  value: "0.0.0.0"
- name: LOG_LEVEL
  value: {{ .root.Values.appLogLevel | quote }}
# The injector gives these to daprd only; the app needs them too (it sends one, checks the other).
- name: DAPR_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.secrets.daprApiToken }}
      key: token
- name: APP_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.secrets.appApiToken }}
      key: token
{{- with .root.Values.secrets.metricsToken }}
# Read-only bearer for GET /metrics (vocab/scrape.py); optional: unset while the Secret is missing.
- name: TASKSYNC_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: token
      optional: true
{{- end }}
{{- range $k, $val := .app.env }}
- name: {{ $k }}
  value: {{ $val | quote }}
{{- end }}
{{- end -}}
