{{- define "meshpki.fullname" -}}
{{- printf "%s-meshpki" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meshpki.labels" -}}
app.kubernetes.io/name: meshpki
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "meshpki.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "meshpki.serverURL" -}}
{{- if .Values.server.publicURL -}}
{{ .Values.server.publicURL }}
{{- else -}}
https://{{ include "meshpki.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.server.service.port }}
{{- end -}}
{{- end -}}
