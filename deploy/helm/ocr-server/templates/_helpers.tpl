{{- define "ocr-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ocr-server.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "ocr-server.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ocr-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocr-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ocr-server.labels" -}}
{{ include "ocr-server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "ocr-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ocr-server.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ocr-server.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (required "image.tag or image.digest is required" .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Whole CPUs of resources.limits.cpu ("2", 2, "1.5", "1500m"), rounded down as the server rounds a CFS
quota (server/cpu_quota.py), at least 1.
*/}}
{{- define "ocr-server.cpuLimitCores" -}}
{{- $cpu := required "resources.limits.cpu is required: workers and math threads are sized from it" (dig "limits" "cpu" "" .Values.resources) | toString -}}
{{- $cores := 0 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $cores = div (trimSuffix "m" $cpu | atoi) 1000 -}}
{{- else -}}
{{- $cores = $cpu | float64 | floor | int -}}
{{- end -}}
{{- max 1 $cores -}}
{{- end -}}

{{/* OCR_WORKERS: server.workers, or derived from the CPU limit (cpu) or the GPUs (gpu). */}}
{{- define "ocr-server.workers" -}}
{{- if .Values.server.workers -}}
{{- .Values.server.workers -}}
{{- else if eq .Values.variant "gpu" -}}
{{- mul .Values.gpu.count .Values.gpu.workersPerGpu -}}
{{- else -}}
{{- include "ocr-server.cpuLimitCores" . -}}
{{- end -}}
{{- end -}}

{{- define "ocr-server.inflightPerPod" -}}
{{- if .Values.autoscaling.inflight.perPod -}}
{{- .Values.autoscaling.inflight.perPod -}}
{{- else -}}
{{- include "ocr-server.workers" . -}}
{{- end -}}
{{- end -}}

{{- define "ocr-server.gpuIds" -}}
{{- $ids := list -}}
{{- range $i := until (int .Values.gpu.count) -}}
{{- $ids = append $ids (toString $i) -}}
{{- end -}}
{{- join "," $ids -}}
{{- end -}}
