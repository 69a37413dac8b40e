{{/*
A TOML writer for the relay's configuration. Helm's own toToml writes every
number of a values file as a float (15000 -> 15000.0), which the relay
refuses for its integer keys; here a whole number is written as an integer
(the relay also takes an integer for its few float keys) and any other
number as a float.

A map of exactly one key "env" or "file" is a secret reference and is
written inline: password = { file = "/etc/cpn/secrets/..." }.
*/}}

{{- define "cpn.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/* "true" when the value is written as [table] rather than inline. */}}
{{- define "cpn.toml.isTable" -}}
{{- if and (kindIs "map" .) (not (include "cpn.toml.isRef" .)) -}}true{{- end -}}
{{- end -}}

{{- define "cpn.toml.isRef" -}}
{{- if and (kindIs "map" .) (eq (len .) 1) (or (hasKey . "env") (hasKey . "file")) -}}true{{- end -}}
{{- end -}}

{{- define "cpn.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq (float64 (int64 $v)) (float64 $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) -}}
{{- $v -}}
{{- else if kindIs "slice" $v -}}
{{- $items := list -}}
{{- range $v -}}{{- $items = append $items (include "cpn.toml.value" .) -}}{{- end -}}
[{{ join ", " $items }}]
{{- else if kindIs "map" $v -}}
{{- $items := list -}}
{{- range $k, $x := $v -}}{{- $items = append $items (printf "%s = %s" (include "cpn.toml.key" $k) (include "cpn.toml.value" $x)) -}}{{- end -}}
{ {{- join ", " $items -}} }
{{- else if kindIs "invalid" $v -}}
{{- fail "relay.config: a null value has no TOML form; leave the key out instead" -}}
{{- else -}}
{{- fail (printf "relay.config: cannot write %v (%s) as TOML" $v (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{/* One table: (dict "path" (list "target" "tls") "table" $map). */}}
{{- define "cpn.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- if $path }}
[{{ $keys := list }}{{ range $path }}{{ $keys = append $keys (include "cpn.toml.key" .) }}{{ end }}{{ join "." $keys }}]
{{- end }}
{{- range $k, $v := $table }}
{{- if not (include "cpn.toml.isTable" $v) }}
{{ include "cpn.toml.key" $k }} = {{ include "cpn.toml.value" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := $table }}
{{- if include "cpn.toml.isTable" $v }}
{{ include "cpn.toml.table" (dict "path" (append $path $k) "table" $v) }}
{{- end }}
{{- end }}
{{- end -}}
