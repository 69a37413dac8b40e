{{/* Names, labels and the image. */}}

{{- define "cpn.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cpn.fullname" -}}
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

{{/* <fullname>-relay, <fullname>-ingest (52 characters leave room for pod suffixes). */}}
{{- define "cpn.relay.fullname" -}}
{{- printf "%s-relay" (include "cpn.fullname" . | trunc 46 | trimSuffix "-") -}}
{{- end -}}

{{- define "cpn.ingest.fullname" -}}
{{- printf "%s-ingest" (include "cpn.fullname" . | trunc 45 | trimSuffix "-") -}}
{{- end -}}

{{- define "cpn.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource; call with (dict "ctx" $ "component" "relay"). */}}
{{- define "cpn.labels" -}}
helm.sh/chart: {{ include "cpn.chart" .ctx }}
{{ include "cpn.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: cpn
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "cpn.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cpn.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cpn.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cpn.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cpn.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Kafka names shared by the relay, its ConfigMap and the KEDA trigger. */}}
{{- define "cpn.kafka.brokers" -}}
{{- required "kafka.brokers is required (bootstrap servers, host:port,...)" .Values.kafka.brokers -}}
{{- end -}}

{{- define "cpn.kafka.group" -}}
{{- default (printf "cpn-relay-%s" .Release.Name) .Values.kafka.group -}}
{{- end -}}

{{- define "cpn.kafka.dlqTopic" -}}
{{- default (printf "%s.dlq.%s" .Values.kafka.topic .Release.Name) .Values.kafka.dlqTopic -}}
{{- end -}}

{{/* The drain deadline in ms: env override, relay.config, the raw TOML, or the relay's default 15000. */}}
{{- define "cpn.relay.deadlineMs" -}}
{{- $ms := 15000 -}}
{{- if .Values.relay.configToml -}}
{{- $parsed := fromToml .Values.relay.configToml -}}
{{- if hasKey $parsed "Error" -}}
{{- fail (printf "relay.configToml is not valid TOML: %s" $parsed.Error) -}}
{{- end -}}
{{- $sd := get $parsed "shutdown" -}}
{{- if and (kindIs "map" $sd) (hasKey $sd "deadline_ms") -}}
{{- $ms = get $sd "deadline_ms" -}}
{{- end -}}
{{- else -}}
{{- $sd := dig "shutdown" dict (.Values.relay.config | default dict) -}}
{{- if hasKey $sd "deadline_ms" -}}
{{- $ms = get $sd "deadline_ms" -}}
{{- end -}}
{{- end -}}
{{- range .Values.relay.extraEnv -}}
{{- if and (eq .name "CPN_SHUTDOWN_DEADLINE_MS") .value -}}
{{- $ms = .value -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^[0-9]+$" (toString $ms)) -}}
{{- fail (printf "shutdown.deadline_ms must be a whole number of milliseconds, got %v" $ms) -}}
{{- end -}}
{{- int64 $ms -}}
{{- end -}}

{{/* terminationGracePeriodSeconds of the relay: above the drain deadline, or fail. */}}
{{- define "cpn.relay.gracePeriod" -}}
{{- $ms := int64 (include "cpn.relay.deadlineMs" .) -}}
{{- $deadline := div (add $ms 999) 1000 -}}
{{- $floor := add $deadline 5 -}}
{{- $grace := add $deadline (int64 .Values.relay.gracePeriodMarginSeconds) -}}
{{- if not (kindIs "invalid" .Values.relay.terminationGracePeriodSeconds) -}}
{{- $grace = int64 .Values.relay.terminationGracePeriodSeconds -}}
{{- end -}}
{{- if lt $grace $floor -}}
{{- fail (printf "relay terminationGracePeriodSeconds %d is too short: shutdown.deadline_ms is %d ms, so the pod needs at least %d s (the deadline + 5 s to commit and leave the group)" $grace $ms $floor) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* KEDA maxReplicaCount: kafka.partitions by default, never above it. */}}
{{- define "cpn.keda.maxReplicas" -}}
{{- $partitions := int64 .Values.kafka.partitions -}}
{{- if lt $partitions 1 -}}
{{- fail "kafka.partitions must be at least 1" -}}
{{- end -}}
{{- $max := $partitions -}}
{{- if not (kindIs "invalid" .Values.autoscaling.keda.maxReplicaCount) -}}
{{- $max = int64 .Values.autoscaling.keda.maxReplicaCount -}}
{{- end -}}
{{- if gt $max $partitions -}}
{{- fail (printf "autoscaling.keda.maxReplicaCount %d is above kafka.partitions %d: a relay replica without a partition only idles" $max $partitions) -}}
{{- end -}}
{{- if lt $max (int64 .Values.autoscaling.keda.minReplicaCount) -}}
{{- fail (printf "autoscaling.keda.minReplicaCount %d is above maxReplicaCount %d" (int64 .Values.autoscaling.keda.minReplicaCount) $max) -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/* librdkafka properties of both binaries: kafka.properties + the TLS file locations. */}}
{{- define "cpn.kafka.properties" -}}
{{- $props := deepCopy (.Values.kafka.properties | default dict) -}}
{{- range $k, $v := $props -}}
{{- if regexMatch "(?i)(password|secret|\\.pem$)" $k -}}
{{- fail (printf "kafka.properties.%s looks like a secret: use kafka.sasl.existingSecret (or kafka.tls) instead of a literal value" $k) -}}
{{- end -}}
{{- end -}}
{{- with .Values.kafka.tls -}}
{{- if .existingSecret -}}
{{- if .caKey -}}{{- $_ := set $props "ssl.ca.location" (printf "/etc/cpn/kafka-tls/%s" .caKey) -}}{{- end -}}
{{- if .certKey -}}{{- $_ := set $props "ssl.certificate.location" (printf "/etc/cpn/kafka-tls/%s" .certKey) -}}{{- end -}}
{{- if .keyKey -}}{{- $_ := set $props "ssl.key.location" (printf "/etc/cpn/kafka-tls/%s" .keyKey) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if or .Values.kafka.sasl.existingSecret .Values.kafka.tls.existingSecret -}}
{{- if not (has (get $props "security.protocol" | default "" | upper) (list "SSL" "SASL_SSL" "SASL_PLAINTEXT")) -}}
{{- fail "kafka.sasl / kafka.tls need kafka.properties.security.protocol (SSL, SASL_SSL or SASL_PLAINTEXT)" -}}
{{- end -}}
{{- end -}}
{{- toJson $props -}}
{{- end -}}

{{/* -X arguments of both binaries (properties, then the SASL password from env). */}}
{{- define "cpn.kafka.args" -}}
{{- $props := include "cpn.kafka.properties" . | fromJson -}}
{{- range $k, $v := $props }}
- "-X"
- {{ printf "%s=%v" $k $v | quote }}
{{- end }}
{{- if .Values.kafka.sasl.existingSecret }}
- "-X"
- "sasl.password=$(KAFKA_SASL_PASSWORD)"
{{- end }}
{{- end -}}

{{- define "cpn.kafka.env" -}}
{{- if .Values.kafka.sasl.existingSecret }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end -}}

{{- define "cpn.kafka.volumes" -}}
{{- with .Values.kafka.tls }}
{{- if .existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      {{- range (list .caKey .certKey .keyKey) }}
      {{- if . }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "cpn.kafka.volumeMounts" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/cpn/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The common pod-level settings. */}}
{{- define "cpn.podCommon" -}}
serviceAccountName: {{ include "cpn.serviceAccountName" . }}
automountServiceAccountToken: false
# Kubernetes would otherwise inject <SERVICE>_PORT... variables for every
# Service of the namespace; one named cpn-kafka-... becomes CPN_KAFKA_...,
# which cpn-relay refuses as an unknown setting.
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
