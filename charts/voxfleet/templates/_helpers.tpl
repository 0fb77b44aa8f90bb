{{/* Names, labels, images and the pieces every pod of the chart shares. */}}

{{- define "voxfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: the release name, plus the chart name unless the release name already has it. */}}
{{- define "voxfleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "voxfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels selectors use; call with (dict "root" $ "component" "gateway"). */}}
{{- define "voxfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "voxfleet.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* Standard labels of every resource; call with (dict "root" $ "component" "gateway"). */}}
{{- define "voxfleet.labels" -}}
helm.sh/chart: {{ include "voxfleet.chart" .root }}
{{ include "voxfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: voxfleet
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "voxfleet.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "voxfleet.workerImage" -}}
{{- default (include "voxfleet.image" .) .Values.workers.image -}}
{{- end -}}

{{- define "voxfleet.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "voxfleet.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "voxfleet.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- default (printf "%s-gateway" (include "voxfleet.fullname" .)) .Values.gateway.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "voxfleet.platformConfigName" -}}
{{- printf "%s-platform" (include "voxfleet.fullname" .) -}}
{{- end -}}

{{- define "voxfleet.sessionKeySecretName" -}}
{{- default (printf "%s-session-key" (include "voxfleet.fullname" .)) .Values.gateway.sessionSigningKey.existingSecret -}}
{{- end -}}

{{/* Where the worker token is mounted; the components read it through VOXFLEET_WORKER_TOKEN_FILE. */}}
{{- define "voxfleet.workerTokenDir" -}}/etc/voxfleet/worker-token{{- end -}}

{{/* Env every component container gets first: who and where it is (downward API), for bind addresses and logs. */}}
{{- define "voxfleet.podEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
{{- end -}}

{{/* The platform settings ConfigMap as envFrom, plus the worker token file. */}}
{{- define "voxfleet.platformEnvFrom" -}}
- configMapRef:
    name: {{ include "voxfleet.platformConfigName" . }}
{{- end -}}

{{/* Volumes every component pod has: the worker token and a writable /tmp (the root file system is read-only). */}}
{{- define "voxfleet.commonVolumes" -}}
- name: worker-token
  secret:
    secretName: {{ .Values.platform.workerToken.secretName }}
    items: [{key: token, path: token}]
    defaultMode: 0440
- name: tmp
  emptyDir: {sizeLimit: 256Mi}
{{- end -}}

{{- define "voxfleet.commonVolumeMounts" -}}
- name: worker-token
  mountPath: {{ include "voxfleet.workerTokenDir" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "voxfleet.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* VOXFLEET_REGIONS as JSON. The LiveKit credentials stay in their Secrets: each becomes an env var of its own
(secretKeyRef, see voxfleet.gateway.livekitCredentialEnv) that this JSON references as $(NAME), which the kubelet
expands when it starts the container. */}}
{{- define "voxfleet.gateway.regionsJson" -}}
{{- $regions := dict -}}
{{- range $i, $name := keys .Values.gateway.regions | sortAlpha -}}
{{- $region := index $.Values.gateway.regions $name -}}
{{- $entry := dict "url" $region.livekitUrl "apiKey" (printf "$(LIVEKIT_%d_API_KEY)" $i) "apiSecret" (printf "$(LIVEKIT_%d_API_SECRET)" $i) -}}
{{- with $region.apiUrl }}{{ $_ := set $entry "apiUrl" . }}{{ end -}}
{{- $_ := set $regions $name $entry -}}
{{- end -}}
{{- toJson $regions -}}
{{- end -}}

{{- define "voxfleet.gateway.livekitCredentialEnv" -}}
{{- range $i, $name := keys .Values.gateway.regions | sortAlpha }}
{{- $region := index $.Values.gateway.regions $name }}
- name: LIVEKIT_{{ $i }}_API_KEY
  valueFrom:
    secretKeyRef: {name: {{ $region.credentialsSecret | quote }}, key: {{ $region.apiKeyKey | default "api-key" | quote }}}
- name: LIVEKIT_{{ $i }}_API_SECRET
  valueFrom:
    secretKeyRef: {name: {{ $region.credentialsSecret | quote }}, key: {{ $region.apiSecretKey | default "api-secret" | quote }}}
{{- end }}
{{- end -}}

{{/* The standard OTEL_* env of a component's container; call with (dict "root" $ "service" "voxfleet-gateway").
Include it after voxfleet.podEnv: OTEL_RESOURCE_ATTRIBUTES names $(POD_NAMESPACE) and $(POD_NAME), which the
kubelet expands only from variables defined earlier in the list. Extra attribute values are percent-encoded (the
SDK decodes them), so a "," "=" or "$(" in a value stays literal; the pod's own attributes come last and win. */}}
{{- define "voxfleet.otelEnv" -}}
{{- $telemetry := .root.Values.telemetry -}}
{{- $attributes := list -}}
{{- range $key, $value := $telemetry.resourceAttributes -}}
{{- $attributes = append $attributes (printf "%s=%s" $key (urlquery $value | replace "+" "%20")) -}}
{{- end -}}
{{- $attributes = append $attributes "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)" }}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- with $telemetry.otlp.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $telemetry.otlp.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $telemetry.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $telemetry.samplerArg | quote }}
{{- end }}
{{- end -}}

{{/* Who may scrape the chart's /metrics ports: networkPolicy.metricsFrom, else the monitoring namespace, else any
namespace. */}}
{{- define "voxfleet.metricsFrom" -}}
{{- if .Values.networkPolicy.metricsFrom -}}
{{- toYaml .Values.networkPolicy.metricsFrom -}}
{{- else if .Values.telemetry.monitoringNamespace -}}
- namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: {{ .Values.telemetry.monitoringNamespace | quote }}}
{{- else -}}
- namespaceSelector: {}
{{- end -}}
{{- end -}}

{{/* The store's mode: "existing" (database.existingSecret), "bundled" (database.bundled.enabled) or "" (none). */}}
{{- define "voxfleet.databaseMode" -}}
{{- if .Values.database.existingSecret -}}existing{{- else if .Values.database.bundled.enabled -}}bundled{{- end -}}
{{- end -}}

{{- define "voxfleet.databaseName" -}}{{ include "voxfleet.fullname" . }}-postgres{{- end -}}
{{- define "voxfleet.databaseSecretName" -}}{{ include "voxfleet.fullname" . }}-database{{- end -}}

{{/* VOXFLEET_DATABASE_URL for the gateway and the migration Job, never a literal value: from the user's Secret, or
built by the kubelet from the bundled server's generated password ($(VAR) expansion of an earlier env entry; the
password is alphanumeric, so it needs no URL encoding). Nothing when there is no store. */}}
{{- define "voxfleet.databaseEnv" -}}
{{- $mode := include "voxfleet.databaseMode" . -}}
{{- if eq $mode "existing" }}
- name: VOXFLEET_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.database.existingSecret | quote }}, key: {{ .Values.database.existingSecretKey | quote }}}
{{- else if eq $mode "bundled" }}
- name: DATABASE_PASSWORD  # not a VOXFLEET_ setting: only the URL below reads it
  valueFrom:
    secretKeyRef: {name: {{ include "voxfleet.databaseSecretName" . | quote }}, key: password}
- name: VOXFLEET_DATABASE_URL
  value: "postgresql+asyncpg://voxfleet:$(DATABASE_PASSWORD)@{{ include "voxfleet.databaseName" . }}.{{ .Release.Namespace }}.svc:5432/voxfleet"
{{- end }}
{{- end -}}
