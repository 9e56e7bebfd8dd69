{{/* Labels every object of the chart carries. */}}
{{- define "klambda.labels" -}}
app.kubernetes.io/name: klambda
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The selector of one component's pods: exactly these labels (function pods' NetworkPolicy
admits the gateway's). */}}
{{- define "klambda.selector" -}}
app.kubernetes.io/name: klambda
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- define "klambda.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Whether the platform has a Redis (the chart's or an external one). */}}
{{- define "klambda.hasRedis" -}}
{{- if or .Values.redis.enabled .Values.redis.external.url }}true{{ end }}
{{- end }}

{{/* The env of a container that talks to Redis: its password, from a Secret. */}}
{{- define "klambda.redisEnv" -}}
{{- if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom: {secretKeyRef: {name: klambda-redis, key: password}}
{{- else if .Values.redis.external.passwordSecret.name }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.passwordSecret.name }}
      key: {{ .Values.redis.external.passwordSecret.key }}
{{- end }}
{{- end }}

{{/* --redis-url with the password spliced in by the kubelet ($(REDIS_PASSWORD)), so it is in
no object. */}}
{{- define "klambda.redisUrl" -}}
{{- if .Values.redis.enabled -}}
--redis-url=redis://:$(REDIS_PASSWORD)@klambda-redis.{{ .Release.Namespace }}.svc:6379/0
{{- else if .Values.redis.external.passwordSecret.name -}}
--redis-url={{ regexReplaceAll "^(rediss?://)" .Values.redis.external.url "${1}:$(REDIS_PASSWORD)@" }}
{{- else -}}
--redis-url={{ .Values.redis.external.url }}
{{- end -}}
{{- end }}

{{/* The security context of every platform container. */}}
{{- define "klambda.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}

{{- define "klambda.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}
