{{/* Names */}}
{{- define "audiosync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "audiosync.fullname" -}}
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

{{- define "audiosync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "audiosync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels; call with (dict "root" $ "component" "worker") */}}
{{- define "audiosync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "audiosync.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "audiosync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "audiosync.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: audiosync
{{- end }}

{{- define "audiosync.image" -}}
{{- $image := .image -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* The grace period of a worker: the soft-shutdown wait, one upload (half the lease), a
margin. From the settings, never a literal, so it follows them. */}}
{{- define "audiosync.workerGraceSeconds" -}}
{{- $shutdown := float64 .Values.settings.AUDIOSYNC_SHUTDOWN_SECONDS }}
{{- $upload := divf (float64 .Values.settings.AUDIOSYNC_LEASE_SECONDS) 2 }}
{{- addf $shutdown $upload .Values.workers.shutdown.marginSeconds | ceil | int }}
{{- end }}

{{/* Pod-level security context */}}
{{- define "audiosync.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "audiosync.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The Redis and broker URLs, from the Secrets named in values */}}
{{- define "audiosync.redisEnv" -}}
- name: AUDIOSYNC_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "redis.existingSecret names the Secret holding the Redis URL" .Values.redis.existingSecret }}
      key: {{ .Values.redis.urlKey }}
{{- end }}

{{- define "audiosync.brokerEnv" -}}
{{- if .Values.broker.urlKey }}
- name: CELERY_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ default .Values.redis.existingSecret .Values.broker.existingSecret }}
      key: {{ .Values.broker.urlKey }}
{{- end }}
{{- end }}

{{/* The environment of the fleet's processes: their settings, the URLs, the log format */}}
{{- define "audiosync.fleetEnv" -}}
{{ include "audiosync.redisEnv" . }}
{{- include "audiosync.brokerEnv" . }}
- name: AUDIOSYNC_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: HOME
  value: /tmp
{{- end }}

{{- define "audiosync.fleetEnvFrom" -}}
- configMapRef:
    name: {{ include "audiosync.fullname" . }}-fleet
{{- end }}

{{/* /tmp on an emptyDir: the root filesystem is read-only */}}
{{- define "audiosync.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "audiosync.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "audiosync.podCommon" -}}
serviceAccountName: {{ include "audiosync.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- include "audiosync.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "audiosync.podMetadata" -}}
labels:
  {{- include "audiosync.labels" . | nindent 2 }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .root.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A probe on a TCP port: no request, no collection, no broker or Redis round trip */}}
{{- define "audiosync.tcpProbes" -}}
startupProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: 5
  failureThreshold: {{ div .probes.startupSeconds 5 }}
livenessProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: {{ .probes.periodSeconds }}
  failureThreshold: {{ .probes.failureThreshold }}
  timeoutSeconds: 5
readinessProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: {{ .probes.periodSeconds }}
  failureThreshold: {{ .probes.failureThreshold }}
  timeoutSeconds: 5
{{- end }}

{{- define "audiosync.cidrPeers" -}}
{{- range . }}
- ipBlock:
    cidr: {{ . }}
{{- end }}
{{- end }}

{{- define "audiosync.tcpPorts" -}}
{{- range . }}
- protocol: TCP
  port: {{ . }}
{{- end }}
{{- end }}

{{/* Every scraped series carries the release (audiosync_release); the target's namespace
label comes from the operator. The alerts and KEDA select on both, so two releases in one
cluster (or one Prometheus) never mix their series. */}}
{{- define "audiosync.releaseRelabeling" -}}
- targetLabel: audiosync_release
  replacement: {{ .Release.Name }}
  action: replace
{{- end }}

{{/* The label matchers of this release's series */}}
{{- define "audiosync.series" -}}
namespace="{{ .Release.Namespace }}",audiosync_release="{{ .Release.Name }}"
{{- end }}
