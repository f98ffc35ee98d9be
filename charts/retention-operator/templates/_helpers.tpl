{{/* The chart's name. */}}
{{- define "retention-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the objects: the release name, with the chart's name
appended when the release name does not contain it.
*/}}
{{- define "retention-operator.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "retention-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels every object carries. */}}
{{- define "retention-operator.labels" -}}
helm.sh/chart: {{ include "retention-operator.chart" . }}
{{ include "retention-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: retention-operator
{{- end }}

{{/* The labels that select the objects of this release. */}}
{{- define "retention-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "retention-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The manager's pods: the selector of the Deployment, the Services, the PodMonitor and the NetworkPolicy. */}}
{{- define "retention-operator.managerSelectorLabels" -}}
{{ include "retention-operator.selectorLabels" . }}
app.kubernetes.io/component: manager
{{- end }}

{{/* The CRDs' labels (cert-manager's crd-labels). */}}
{{- define "retention-operator.crdLabels" -}}
{{ include "retention-operator.labels" . }}
app.kubernetes.io/component: crds
{{- end }}

{{- define "retention-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "retention-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's image; its outreach Jobs run the same. */}}
{{- define "retention-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "retention-operator.jobsNamespace" -}}
{{- default .Release.Namespace .Values.jobs.namespace }}
{{- end }}

{{- define "retention-operator.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/* The unsubscribe key file inside the container. */}}
{{- define "retention-operator.unsubscribeKeyFile" -}}
/var/run/secrets/retention.dev/unsubscribe/{{ .Values.unsubscribe.keySecret.key }}
{{- end }}

{{/* Checks of values that the schema cannot express. */}}
{{- define "retention-operator.validate" -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled: choose one, or Prometheus scrapes every sample twice" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled (the ServiceMonitor scrapes through the Service)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: replicas without a leader would all reconcile" }}
{{- end }}
{{- if .Values.unsubscribe.enabled }}
{{- if not (hasPrefix "https://" .Values.unsubscribe.url) }}
{{- fail "unsubscribe.enabled needs unsubscribe.url, the public https base URL of the endpoint" }}
{{- end }}
{{- if not .Values.unsubscribe.keySecret.name }}
{{- fail "unsubscribe.enabled needs unsubscribe.keySecret.name, the Secret of the token signing key" }}
{{- end }}
{{- end }}
{{- end }}
