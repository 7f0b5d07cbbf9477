{{/* Redis connection metadata shared by the state store and the Redis Streams pub/sub. */}}
{{- define "tasksync.redisMetadata" -}}
- name: redisHost
  value: {{ .Values.redis.host | quote }}
{{- if .Values.redis.username }}
- name: redisUsername
  value: {{ .Values.redis.username | quote }}
{{- end }}
{{- if .Values.redis.password.enabled }}
- name: redisPassword
  secretKeyRef:
    name: {{ .Values.redis.password.secretName }}
    key: {{ .Values.redis.password.secretKey }}
{{- end }}
- name: enableTLS
  value: {{ .Values.redis.enableTLS | quote }}
{{- end -}}
