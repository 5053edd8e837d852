{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "kiln.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kiln.server" -}}{{ include "kiln.fullname" . | trunc 56 | trimSuffix "-" }}-server{{- end -}}
{{- define "kiln.gateway" -}}{{ include "kiln.fullname" . | trunc 55 | trimSuffix "-" }}-gateway{{- end -}}

{{- define "kiln.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kiln.serverSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "kiln.gatewaySelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "kiln.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default (printf "%s%s" .Chart.AppVersion (.Values.image.tagSuffix | default "")) }}
{{- end -}}

{{/* Seconds of a Go duration such as 30s, 2m or 1m30s (h, m, s only). */}}
{{- define "kiln.seconds" -}}
{{- $d := toString . -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+[hms]" $d -1 -}}
{{- $n := regexFind "[0-9]+" $part | int -}}
{{- if hasSuffix "h" $part }}{{ $total = add $total (mul $n 3600) }}{{ else if hasSuffix "m" $part }}{{ $total = add $total (mul $n 60) }}{{ else }}{{ $total = add $total $n }}{{ end -}}
{{- end -}}
{{- if not (regexMatch "^([0-9]+[hms])+$" $d) -}}
{{- fail (printf "%q is not a duration of whole hours, minutes and seconds such as 30s or 1m30s" $d) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds of a server pod: the preStop sleep, then kiln serve's drain
(--exit-timeout, within which --shutdown-grace runs), plus 5 s to exit.
*/}}
{{- define "kiln.terminationGrace" -}}
{{- add .Values.server.preStopSeconds (include "kiln.seconds" .Values.server.exitTimeout | int) 5 -}}
{{- end -}}

{{/* The server pods' selector as a PromQL label matcher. */}}
{{- define "kiln.promSelector" -}}
namespace="{{ .Release.Namespace }}",service="{{ include "kiln.server" . }}"
{{- end -}}
