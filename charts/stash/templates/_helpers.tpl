{{/* The project's image: one for the operator, the webhook, sidecars, Jobs and CronJobs. */}}
{{- define "stash.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Where the backups push their metrics. */}}
{{- define "stash.pushgatewayURL" -}}
{{- if .Values.pushgateway.enabled -}}
http://127.0.0.1:9091
{{- else if .Values.pushgateway.url -}}
{{ .Values.pushgateway.url }}
{{- end -}}
{{- end -}}

{{- define "stash.selectorLabels" -}}
app.kubernetes.io/name: stash
app.kubernetes.io/component: operator
{{- end -}}

{{- define "stash.pullPolicy" -}}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{- define "stash.env" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: STASH_IMAGE  # the image of CronJobs, backup Jobs and sidecars: this one
  value: {{ include "stash.image" . }}
{{- end -}}

{{- define "stash.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}
