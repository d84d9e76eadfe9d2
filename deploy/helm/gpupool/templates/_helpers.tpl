{{/* Labels every object carries. */}}
{{- define "gpupool.labels" -}}
app.kubernetes.io/part-of: gpupool
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The gpupool image. */}}
{{- define "gpupool.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The resource names the scheduler manages, one per line. */}}
{{- define "gpupool.resources" -}}
{{- range list "gpu" "gpumem" "gpumem-percentage" "gpucores" "priority" }}
{{ printf "%s/%s" $.Values.resourceDomain . }}
{{- end }}
{{- end }}

{{/* Checks of values that would otherwise fail only in the cluster. */}}
{{- define "gpupool.validate" -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" .Values.resourceDomain) }}
{{- fail (printf "resourceDomain %q is not a DNS name (e.g. nvidia.com)" .Values.resourceDomain) }}
{{- end }}
{{- if not (has .Values.scheduler.nodePolicy (list "binpack" "spread")) }}
{{- fail (printf "scheduler.nodePolicy %q: binpack or spread" .Values.scheduler.nodePolicy) }}
{{- end }}
{{- if not (has .Values.scheduler.gpuPolicy (list "binpack" "spread")) }}
{{- fail (printf "scheduler.gpuPolicy %q: binpack or spread" .Values.scheduler.gpuPolicy) }}
{{- end }}
{{- $over := float64 .Values.scheduler.memoryOversubscription }}
{{- if or (lt $over 1.0) (gt $over 16.0) }}
{{- fail (printf "scheduler.memoryOversubscription %v: a factor from 1 to 16" .Values.scheduler.memoryOversubscription) }}
{{- end }}
{{- if not (has .Values.node.auditPolicy (list "report" "kill")) }}
{{- fail (printf "node.auditPolicy %q: report or kill" .Values.node.auditPolicy) }}
{{- end }}
{{- if or (lt (int .Values.node.split) 1) (gt (int .Values.node.split) 64) }}
{{- fail (printf "node.split %v: a whole number from 1 to 64" .Values.node.split) }}
{{- end }}
{{- if .Values.remoteServer.enabled }}
{{- $port := int .Values.remoteServer.port }}
{{- if or (lt $port 1) (gt $port 65535) }}
{{- fail (printf "remoteServer.port %v: a port from 1 to 65535" .Values.remoteServer.port) }}
{{- end }}
{{- if and .Values.remoteServer.tlsClientCaSecret (not .Values.remoteServer.tlsSecret) }}
{{- fail "remoteServer.tlsClientCaSecret needs remoteServer.tlsSecret: client certificates are checked over tls:// only" }}
{{- end }}
{{- $metrics := int .Values.remoteServer.metricsPort }}
{{- if or (lt $metrics 0) (gt $metrics 65535) (eq $metrics $port) }}
{{- fail (printf "remoteServer.metricsPort %v: a port from 1 to 65535 other than remoteServer.port, or 0 for none" .Values.remoteServer.metricsPort) }}
{{- end }}
{{- if not .Values.remoteServer.clientsSecret }}
{{- fail "remoteServer.clientsSecret is empty: name the Secret holding the clients file (key `clients`)" }}
{{- end }}
{{- $servers := dict }}
{{- range $k, $v := .Values.remoteServer.nodeSelector }}{{- $_ := set $servers $k (toString $v) }}{{- end }}
{{- $agents := dict }}
{{- range $k, $v := .Values.node.nodeSelector }}{{- $_ := set $agents $k (toString $v) }}{{- end }}
{{- if and .Values.node.enabled (eq (toYaml $servers) (toYaml $agents)) }}
{{- fail "remoteServer.nodeSelector picks the node agent's nodes (node.nodeSelector): the servers' tenants are not pods, so neither the scheduler nor the node agent would count their memory; label other nodes for the servers" }}
{{- end }}
{{- end }}
{{- if not (has .Values.webhook.failurePolicy (list "Ignore" "Fail")) }}
{{- fail (printf "webhook.failurePolicy %q: Ignore or Fail" .Values.webhook.failurePolicy) }}
{{- end }}
{{- if and .Values.webhook.enabled (not .Values.webhook.tls.create) (not .Values.webhook.tls.caBundle) }}
{{- fail "webhook.tls.caBundle is empty: with webhook.tls.create=false give the CA of the Secret webhook.tls.secretName, base64-encoded" }}
{{- end }}
{{- end }}
