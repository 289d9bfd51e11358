{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "batchdrain.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or the release name alone when it
already contains the chart name; truncated to 63 characters.
*/}}
{{- define "batchdrain.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "batchdrain.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "batchdrain.labels" -}}
helm.sh/chart: {{ include "batchdrain.chart" . }}
{{ include "batchdrain.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: batchdrain
{{- end }}

{{/*
Selector labels: name and instance only, because selectors are immutable.
*/}}
{{- define "batchdrain.selectorLabels" -}}
app.kubernetes.io/name: {{ include "batchdrain.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The controller's ServiceAccount name.
*/}}
{{- define "batchdrain.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "batchdrain.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Controller image reference.
*/}}
{{- define "batchdrain.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Name of the Secret holding the database URL: the created one, or the existing one.
*/}}
{{- define "batchdrain.databaseSecretName" -}}
{{- if .Values.database.url }}
{{- printf "%s-database" (include "batchdrain.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- fail "database: set database.existingSecret (a Secret you created) or, for tests, database.url" }}
{{- end }}
{{- end }}

{{/*
Name of the logs PVC: the existing claim, or the created one.
*/}}
{{- define "batchdrain.logsClaimName" -}}
{{- default (printf "%s-logs" (include "batchdrain.fullname" .) | trunc 63 | trimSuffix "-") .Values.persistence.existingClaim }}
{{- end }}

{{/*
Whether logs go to the PVC: persistence.enabled, unless the S3 log store is on.
*/}}
{{- define "batchdrain.persistence" -}}
{{- if and .Values.persistence.enabled (not .Values.s3.enabled) }}true{{ end }}
{{- end }}

{{/*
BATCHDRAIN_LOG_STORE: s3.url, the mounted volume, or logStore; exactly one of them.
*/}}
{{- define "batchdrain.logStore" -}}
{{- if .Values.s3.enabled }}
{{- if .Values.logStore }}
{{- fail "logs: set either s3.enabled (with s3.url) or logStore, not both" }}
{{- end }}
{{- if not (hasPrefix "s3://" .Values.s3.url) }}
{{- fail "logs: s3.enabled needs s3.url = s3://bucket/prefix" }}
{{- end }}
{{- .Values.s3.url }}
{{- else if and .Values.persistence.enabled .Values.logStore }}
{{- fail "logs: set either persistence.enabled=true or logStore, not both" }}
{{- else if .Values.persistence.enabled }}
{{- .Values.persistence.mountPath }}
{{- else if .Values.logStore }}
{{- .Values.logStore }}
{{- else }}
{{- fail "logs: with persistence.enabled=false, set logStore (an fsspec URL) or s3.enabled with s3.url" }}
{{- end }}
{{- end }}

{{/*
BATCHDRAIN_LOG_STORE_OPTIONS of the S3 log store: endpoint and region, then s3.options.
*/}}
{{- define "batchdrain.logStoreOptions" -}}
{{- $options := dict }}
{{- with .Values.s3.endpoint }}{{- $_ := set $options "endpoint_url" . }}{{- end }}
{{- with .Values.s3.region }}{{- $_ := set $options "region" . }}{{- end }}
{{- range $key, $value := .Values.s3.options }}{{- $_ := set $options $key ($value | toString) }}{{- end }}
{{- toJson $options }}
{{- end }}
