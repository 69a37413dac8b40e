{{/* The relay's secret files: a JSON list of {volume, dir, secret, keys}. */}}
{{- define "cpn.relay.secretMounts" -}}
{{- $s := .Values.relay.secrets -}}
{{- $out := list -}}
{{- if $s.bearerToken.existingSecret -}}
{{- $out = append $out (dict "volume" "secret-bearer-token" "dir" "/etc/cpn/secrets/bearer-token" "secret" $s.bearerToken.existingSecret "keys" (list $s.bearerToken.key)) -}}
{{- end -}}
{{- if $s.basicPassword.existingSecret -}}
{{- $out = append $out (dict "volume" "secret-basic-password" "dir" "/etc/cpn/secrets/basic-password" "secret" $s.basicPassword.existingSecret "keys" (list $s.basicPassword.key)) -}}
{{- end -}}
{{- if $s.oauth2ClientSecret.existingSecret -}}
{{- $out = append $out (dict "volume" "secret-oauth2-client" "dir" "/etc/cpn/secrets/oauth2-client" "secret" $s.oauth2ClientSecret.existingSecret "keys" (list $s.oauth2ClientSecret.key)) -}}
{{- end -}}
{{- range $i, $sig := $s.signing -}}
{{- if not (and $sig.existingSecret $sig.key) -}}
{{- fail (printf "relay.secrets.signing[%d] needs existingSecret and key" $i) -}}
{{- end -}}
{{- $out = append $out (dict "volume" (printf "secret-signing-%d" $i) "dir" (printf "/etc/cpn/secrets/signing-%d" $i) "secret" $sig.existingSecret "keys" (list $sig.key)) -}}
{{- end -}}
{{- if $s.proxyPassword.existingSecret -}}
{{- $out = append $out (dict "volume" "secret-proxy-password" "dir" "/etc/cpn/secrets/proxy-password" "secret" $s.proxyPassword.existingSecret "keys" (list $s.proxyPassword.key)) -}}
{{- end -}}
{{- with $s.targetTls -}}
{{- if .existingSecret -}}
{{- $keys := list -}}
{{- range (list .caKey .certKey .keyKey) -}}{{- if . -}}{{- $keys = append $keys . -}}{{- end -}}{{- end -}}
{{- if not $keys -}}
{{- fail "relay.secrets.targetTls.existingSecret needs caKey and/or certKey + keyKey" -}}
{{- end -}}
{{- $out = append $out (dict "volume" "secret-target-tls" "dir" "/etc/cpn/secrets/target-tls" "secret" .existingSecret "keys" $keys) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Fails when a secret-bearing key of relay.config holds a literal value. */}}
{{- define "cpn.relay.refuseLiteral" -}}
{{- $where := .where -}}
{{- $v := .value -}}
{{- if or (not (hasKey . "table")) (hasKey .table .key) -}}
{{- if not (include "cpn.toml.isRef" $v) -}}
{{- fail (printf "relay.config.%s holds a literal secret: the ConfigMap is not a Secret. Use relay.secrets (a Secret mounted as a file) or { env: VAR } / { file: /path } with relay.extraEnv / relay.extraVolumes" $where) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The relay's configuration as a map, with the chart's keys added (JSON). */}}
{{- define "cpn.relay.config" -}}
{{- $cfg := deepCopy (.Values.relay.config | default dict) -}}
{{- $s := .Values.relay.secrets -}}
{{- range $section, $_ := $cfg -}}
{{- if not (has $section (list "kafka" "target" "retry" "circuit" "concurrency" "commit" "shutdown" "health" "observability" "filter")) -}}
{{- fail (printf "relay.config.%s is not a section of the relay's configuration (relay/relay.example.toml)" $section) -}}
{{- end -}}
{{- end -}}
{{- $kafka := get $cfg "kafka" | default dict -}}
{{- range (list "brokers" "topic" "group" "dlq_topic" "properties") -}}
{{- if hasKey $kafka . -}}
{{- fail (printf "relay.config.kafka.%s is set by the chart: use the kafka section of the values (kafka.brokers, kafka.topic, kafka.group, kafka.dlqTopic, kafka.properties)" .) -}}
{{- end -}}
{{- end -}}
{{- if hasKey $kafka "instance_id" -}}
{{- fail "relay.config.kafka.instance_id must be unique per replica: use relay.kind=StatefulSet, which sets it from the pod name" -}}
{{- end -}}
{{- $_ := set $kafka "brokers" (include "cpn.kafka.brokers" .) -}}
{{- $_ = set $kafka "topic" .Values.kafka.topic -}}
{{- $_ = set $kafka "group" (include "cpn.kafka.group" .) -}}
{{- $_ = set $kafka "dlq_topic" (include "cpn.kafka.dlqTopic" .) -}}
{{- $props := include "cpn.kafka.properties" . | fromJson -}}
{{- if $props -}}{{- $_ = set $kafka "properties" $props -}}{{- end -}}
{{- $_ = set $cfg "kafka" $kafka -}}
{{- $obs := get $cfg "observability" | default dict -}}
{{- if hasKey $obs "metrics_listen" -}}
{{- fail "relay.config.observability.metrics_listen is set by the chart: use relay.metricsPort" -}}
{{- end -}}
{{- $_ = set $obs "metrics_listen" (printf "0.0.0.0:%d" (int64 .Values.relay.metricsPort)) -}}
{{- $_ = set $cfg "observability" $obs -}}
{{- $target := get $cfg "target" | default dict -}}
{{- if not (get $target "url") -}}
{{- fail "relay.config.target.url is required: where each event is POSTed" -}}
{{- end -}}
{{- $auth := get $target "auth" | default dict -}}
{{- include "cpn.relay.refuseLiteral" (dict "where" "target.auth.password" "table" $auth "key" "password" "value" (get $auth "password")) -}}
{{- include "cpn.relay.refuseLiteral" (dict "where" "target.auth.client_secret" "table" $auth "key" "client_secret" "value" (get $auth "client_secret")) -}}
{{- $kinds := list -}}
{{- if $s.bearerToken.existingSecret -}}
{{- $kinds = append $kinds "bearer_file" -}}
{{- $_ = set $auth "token_file" (printf "/etc/cpn/secrets/bearer-token/%s" $s.bearerToken.key) -}}
{{- end -}}
{{- if $s.basicPassword.existingSecret -}}
{{- $kinds = append $kinds "basic" -}}
{{- $_ = set $auth "password" (dict "file" (printf "/etc/cpn/secrets/basic-password/%s" $s.basicPassword.key)) -}}
{{- end -}}
{{- if $s.oauth2ClientSecret.existingSecret -}}
{{- $kinds = append $kinds "oauth2" -}}
{{- $_ = set $auth "client_secret" (dict "file" (printf "/etc/cpn/secrets/oauth2-client/%s" $s.oauth2ClientSecret.key)) -}}
{{- end -}}
{{- if gt (len $kinds) 1 -}}
{{- fail (printf "relay.secrets: one target.auth kind at a time, got %s" (join ", " $kinds)) -}}
{{- end -}}
{{- if $kinds -}}
{{- $kind := first $kinds -}}
{{- if and (hasKey $auth "kind") (ne (get $auth "kind") $kind) -}}
{{- fail (printf "relay.config.target.auth.kind is %v but relay.secrets gives a %s credential" (get $auth "kind") $kind) -}}
{{- end -}}
{{- $_ = set $auth "kind" $kind -}}
{{- end -}}
{{- if $auth -}}{{- $_ = set $target "auth" $auth -}}{{- end -}}
{{- $headers := get $target "headers" | default dict -}}
{{- range $name, $_ := $headers -}}
{{- if regexMatch "(?i)(authorization|token|secret|api[-_]?key|password|cookie|signature)" $name -}}
{{- fail (printf "relay.config.target.headers.%s looks like a secret: use relay.secrets.headers" $name) -}}
{{- end -}}
{{- end -}}
{{- $proxy := get $target "proxy" | default dict -}}
{{- include "cpn.relay.refuseLiteral" (dict "where" "target.proxy.password" "table" $proxy "key" "password" "value" (get $proxy "password")) -}}
{{- if $s.proxyPassword.existingSecret -}}
{{- if not (get $proxy "url") -}}
{{- fail "relay.secrets.proxyPassword needs relay.config.target.proxy.url (and username)" -}}
{{- end -}}
{{- $_ = set $proxy "password" (dict "file" (printf "/etc/cpn/secrets/proxy-password/%s" $s.proxyPassword.key)) -}}
{{- $_ = set $target "proxy" $proxy -}}
{{- end -}}
{{- $signing := get $target "signing" | default dict -}}
{{- $secrets := get $signing "secrets" | default list -}}
{{- range $i, $sec := $secrets -}}
{{- include "cpn.relay.refuseLiteral" (dict "where" (printf "target.signing.secrets[%d]" $i) "value" $sec) -}}
{{- end -}}
{{- range $i, $sig := $s.signing -}}
{{- $secrets = append $secrets (dict "file" (printf "/etc/cpn/secrets/signing-%d/%s" $i $sig.key)) -}}
{{- end -}}
{{- if $secrets -}}
{{- $_ = set $signing "secrets" $secrets -}}
{{- $_ = set $target "signing" $signing -}}
{{- end -}}
{{- with $s.targetTls -}}
{{- if .existingSecret -}}
{{- $tls := get $target "tls" | default dict -}}
{{- if and .certKey (not .keyKey) -}}{{- fail "relay.secrets.targetTls: certKey needs keyKey (mTLS takes both)" -}}{{- end -}}
{{- if and .keyKey (not .certKey) -}}{{- fail "relay.secrets.targetTls: keyKey needs certKey (mTLS takes both)" -}}{{- end -}}
{{- if .caKey -}}{{- $_ = set $tls "ca_file" (printf "/etc/cpn/secrets/target-tls/%s" .caKey) -}}{{- end -}}
{{- if .certKey -}}{{- $_ = set $tls "client_cert_file" (printf "/etc/cpn/secrets/target-tls/%s" .certKey) -}}{{- end -}}
{{- if .keyKey -}}{{- $_ = set $tls "client_key_file" (printf "/etc/cpn/secrets/target-tls/%s" .keyKey) -}}{{- end -}}
{{- $_ = set $target "tls" $tls -}}
{{- end -}}
{{- end -}}
{{- $_ = set $cfg "target" $target -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* The TOML file of the ConfigMap. */}}
{{- define "cpn.relay.toml" -}}
{{- if .Values.relay.configToml -}}
{{- .Values.relay.configToml -}}
{{- else -}}
# cpn-relay configuration rendered by the cpn chart from relay.config
# (relay/relay.example.toml documents every key). Secrets are references
# ({ file = ... }) to mounted Kubernetes Secrets, never values.

{{ include "cpn.toml.table" (dict "path" list "table" (include "cpn.relay.config" . | fromJson)) | trim }}
{{- end -}}
{{- end -}}

{{/* The relay's pod template (shared by the Deployment and the StatefulSet). */}}
{{- define "cpn.relay.podTemplate" -}}
{{- $mounts := include "cpn.relay.secretMounts" . | fromJsonArray -}}
metadata:
  labels:
    {{- include "cpn.selectorLabels" (dict "ctx" . "component" "relay") | nindent 4 }}
    {{- with .Values.relay.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "cpn.relay.toml" . | sha256sum }}
    {{- with .Values.relay.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- include "cpn.podCommon" . | nindent 2 }}
  terminationGracePeriodSeconds: {{ include "cpn.relay.gracePeriod" . }}
  {{- with .Values.relay.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  containers:
    - name: relay
      image: {{ include "cpn.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: ["/usr/local/bin/cpn-relay"]
      # Flags win over the file and env: the Kafka names here are the ones
      # the KEDA trigger measures the lag of.
      args:
        - "run"
        - "--config"
        - "/etc/cpn/relay/relay.toml"
        - "--metrics-listen"
        - {{ printf "0.0.0.0:%d" (int64 .Values.relay.metricsPort) | quote }}
        - "--brokers"
        - {{ include "cpn.kafka.brokers" . | quote }}
        - "--topic"
        - {{ .Values.kafka.topic | quote }}
        - "--group"
        - {{ include "cpn.kafka.group" . | quote }}
        - "--dlq-topic"
        - {{ include "cpn.kafka.dlqTopic" . | quote }}
        {{- if .Values.relay.configToml }}
        {{- with (include "cpn.kafka.args" . | trim) }}{{ . | nindent 8 }}{{ end }}
        {{- else if .Values.kafka.sasl.existingSecret }}
        - "-X"
        - "sasl.password=$(KAFKA_SASL_PASSWORD)"
        {{- end }}
        {{- range $i, $h := .Values.relay.secrets.headers }}
        {{- if not (and $h.name $h.existingSecret $h.key) }}
        {{- fail (printf "relay.secrets.headers[%d] needs name, existingSecret and key" $i) }}
        {{- end }}
        - "--header"
        - {{ printf "%s: $(CPN_SECRET_HEADER_%d)" $h.name $i | quote }}
        {{- end }}
      env:
        {{- if eq .Values.relay.kind "StatefulSet" }}
        # Static membership: group.instance.id = the pod name (relay-0,
        # relay-1, ...), unique and stable across restarts.
        - name: CPN_KAFKA_INSTANCE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with (include "cpn.kafka.env" . | trim) }}{{ . | nindent 8 }}{{ end }}
        {{- range $i, $h := .Values.relay.secrets.headers }}
        - name: {{ printf "CPN_SECRET_HEADER_%d" $i }}
          valueFrom:
            secretKeyRef:
              name: {{ $h.existingSecret }}
              key: {{ $h.key }}
        {{- end }}
        {{- with .Values.relay.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ .Values.relay.metricsPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        {{- toYaml .Values.relay.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        {{- toYaml .Values.relay.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.relay.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/cpn/relay
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- with (include "cpn.kafka.volumeMounts" . | trim) }}{{ . | nindent 8 }}{{ end }}
        {{- range $mounts }}
        - name: {{ .volume }}
          mountPath: {{ .dir }}
          readOnly: true
        {{- end }}
        {{- with .Values.relay.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "cpn.relay.fullname" . }}
    - name: tmp
      emptyDir:
        sizeLimit: 16Mi
    {{- with (include "cpn.kafka.volumes" . | trim) }}{{ . | nindent 4 }}{{ end }}
    {{- range $mounts }}
    - name: {{ .volume }}
      secret:
        secretName: {{ .secret }}
        defaultMode: 0440
        items:
          {{- range .keys }}
          - key: {{ . }}
            path: {{ . }}
          {{- end }}
    {{- end }}
    {{- with .Values.relay.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.relay.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.relay.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.relay.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.relay.topologySpreadConstraints }}
  {{- $selector := dict "matchLabels" (include "cpn.selectorLabels" (dict "ctx" $ "component" "relay") | fromYaml) }}
  {{- $constraints := list }}
  {{- range . }}
  {{- $constraints = append $constraints (ternary . (merge (dict "labelSelector" $selector) .) (hasKey . "labelSelector")) }}
  {{- end }}
  topologySpreadConstraints:
    {{- toYaml $constraints | nindent 4 }}
  {{- end }}
{{- end -}}
