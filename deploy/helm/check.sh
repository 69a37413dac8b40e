#!/usr/bin/env bash
# Checks the cpn Helm chart (deploy/helm/cpn) without a cluster:
#
#   1. builds a pinned Helm from the Go module proxy into deploy/helm/.cache/bin
#      (reused when that exact version is already there) and the checker
#      (deploy/helm/check, its own Go module);
#   2. checks appVersion against the workspace version in Cargo.toml;
#   3. helm lint --strict with each values file of deploy/helm/cpn/ci/;
#   4. helm template with each of them, piped into the checker: every
#      document decoded strictly into its Kubernetes / KEDA /
#      prometheus-operator Go type, then the chart's invariants (probes,
#      security context, grace period above the relay's drain deadline, no
#      secret in a ConfigMap, KEDA <= partitions on the relay's own group,
#      ...). When a cpn-relay / cpn-producer binary is found ($CPN_RELAY_BIN,
#      $CPN_PRODUCER_BIN, or target/{release,debug}/), the relay's rendered
#      file, flags and env also go through `cpn-relay check-config`, and the
#      ingest's flags and env are compared with `cpn-producer serve --help`;
#   5. the negative cases: every deploy/helm/check/testdata/bad-*.yaml must
#      fail to render;
#   6. gofmt, go vet and go test in deploy/helm/check (the tests render the
#      chart with the same helm);
#   7. helm package, and NOTES.txt through helm install --dry-run=client.
#
# Needs only Go (1.26.8 here) and the module proxy. One line per check;
# exit status 1 when any failed (every check runs regardless). CPN_CHECK_VERBOSE=1
# prints every line of the checker.
set -euo pipefail

HELM_MODULE=helm.sh/helm/v4
HELM_VERSION=v4.3.2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
chart="$here/cpn"
checkdir="$here/check"
bindir="$here/.cache/bin"
helm="$bindir/helm"
checker="$bindir/cpn-chart-check"
mkdir -p "$bindir"

failed=0
passed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# step NAME COMMAND...: runs it, prints one line, shows the output on failure.
step() {
	local name=$1
	shift
	local t0
	t0=$(now)
	if "$@" >"$work/out" 2>&1; then
		printf 'ok    %-62s %s\n' "$name" "$(elapsed "$t0")"
		passed=$((passed + 1))
	else
		printf 'FAIL  %-62s %s\n' "$name" "$(elapsed "$t0")"
		# The checker's own FAIL lines when there are any, else the tail.
		if grep -q 'FAIL' "$work/out"; then
			grep 'FAIL' "$work/out" | sed 's/^/      | /' | head -n 40
		else
			sed 's/^/      | /' "$work/out" | tail -n 40
		fi
		failed=$((failed + 1))
	fi
	if [[ ${CPN_CHECK_VERBOSE:-0} == 1 ]]; then sed 's/^/      | /' "$work/out"; fi
}

if ! command -v go >/dev/null 2>&1; then
	echo "FAIL  go is not on the PATH (Go 1.26 or newer is needed)" >&2
	exit 1
fi
echo "using $(go version)"

# --- 1. tools ----------------------------------------------------------------

helm_is_pinned() {
	[[ -x $helm ]] && go version -m "$helm" 2>/dev/null | grep -qE "^\s+mod\s+$HELM_MODULE\s+$HELM_VERSION(\s|$)"
}
build_helm() {
	if helm_is_pinned; then
		echo "reusing $helm"
		return 0
	fi
	# A module-mode install of the pinned version; nothing from this
	# repository's go.mod is involved.
	(cd "$work" && GOBIN="$bindir" GOFLAGS=-mod=mod go install "$HELM_MODULE/cmd/helm@$HELM_VERSION") || return 1
	helm_is_pinned
}
step "build helm $HELM_VERSION ($HELM_MODULE, Go module proxy)" build_helm
if ! helm_is_pinned; then
	echo "FAIL  no helm: nothing else can run" >&2
	exit 1
fi

build_checker() {
	# -mod=readonly: go.mod and go.sum as committed, nothing resolved anew.
	(cd "$checkdir" && GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$checker" .)
}
step "build the checker (deploy/helm/check)" build_checker

# --- 2. versions ---------------------------------------------------------------

app_version_matches() {
	local cargo chart_app
	cargo=$(awk '/^\[workspace.package\]/ { s = 1; next } /^\[/ { s = 0 } s && /^version *=/ { gsub(/[" ]/, "", $0); sub(/version=/, "", $0); print; exit }' "$repo/Cargo.toml")
	chart_app=$(awk -F'"' '/^appVersion:/ { print $2 }' "$chart/Chart.yaml")
	echo "Cargo.toml workspace version: $cargo, Chart.yaml appVersion: $chart_app"
	[[ -n $cargo && $cargo == "$chart_app" ]]
}
step "Chart.yaml appVersion = the workspace version (Cargo.toml)" app_version_matches

# --- 3./4. lint and render each ci values file -----------------------------------

relay_bin=${CPN_RELAY_BIN:-}
producer_bin=${CPN_PRODUCER_BIN:-}
for profile in release debug; do
	[[ -z $relay_bin && -x $repo/target/$profile/cpn-relay ]] && relay_bin=$repo/target/$profile/cpn-relay
	[[ -z $producer_bin && -x $repo/target/$profile/cpn-producer ]] && producer_bin=$repo/target/$profile/cpn-producer
done
checker_flags=(-relay-example "$repo/relay/relay.example.toml")
if [[ -n $relay_bin ]]; then
	checker_flags+=(-relay-bin "$relay_bin")
else
	echo "skip  cpn-relay check-config of the rendered config: no binary (set CPN_RELAY_BIN or build target/debug/cpn-relay)"
fi
if [[ -n $producer_bin ]]; then
	checker_flags+=(-producer-bin "$producer_bin")
else
	echo "skip  cpn-producer serve --help comparison: no binary (set CPN_PRODUCER_BIN or build target/debug/cpn-producer)"
fi

render_and_check() {
	local values=$1 name
	name=$(basename "$values" .yaml)
	"$helm" template "crm-$name" "$chart" --namespace cpn -f "$values" >"$work/$name.rendered.yaml" || return 1
	"$checker" -name "$name" "${checker_flags[@]}" "$work/$name.rendered.yaml"
}

shopt -s nullglob
ci_values=("$chart"/ci/*.yaml)
if ((${#ci_values[@]} == 0)); then
	echo "FAIL  no values files in $chart/ci" >&2
	failed=$((failed + 1))
fi
for values in "${ci_values[@]}"; do
	name=$(basename "$values")
	step "helm lint --strict -f ci/$name" "$helm" lint --strict "$chart" -f "$values"
	step "helm template -f ci/$name | checker" render_and_check "$values"
done

# --- 5. values that must not render ---------------------------------------------

must_not_render() {
	local values=$1
	if "$helm" template crm-bad "$chart" -f "$values"; then
		echo "rendered, but $values must fail"
		return 1
	fi
	return 0
}
bad_values=("$checkdir"/testdata/bad-*.yaml)
for values in "${bad_values[@]}"; do
	step "helm template fails on testdata/$(basename "$values")" must_not_render "$values"
done

# --- 6. the checker's own tests ---------------------------------------------------

gofmt_clean() {
	local out
	out=$(cd "$checkdir" && gofmt -l .)
	[[ -z $out ]] || {
		echo "not gofmt-ed: $out"
		return 1
	}
}
step "gofmt -l deploy/helm/check" gofmt_clean
go_in_checkdir() {
	(cd "$checkdir" && HELM="$helm" GOFLAGS="-mod=readonly -buildvcs=false" go "$@")
}
step "go vet ./... (deploy/helm/check)" go_in_checkdir vet ./...
step "go test ./... (deploy/helm/check)" go_in_checkdir test -count=1 ./...

# --- 7. package ---------------------------------------------------------------------

step "helm package" "$helm" package "$chart" --destination "$work"
notes_render() {
	"$helm" install crm-notes "$chart" --dry-run=client -f "$chart/ci/full-values.yaml" >"$work/notes.txt" || return 1
	grep -q 'consumer group' "$work/notes.txt"
}
step "NOTES.txt renders (helm install --dry-run=client)" notes_render

echo "$passed passed, $failed failed"
((failed == 0))
