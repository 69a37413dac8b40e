#!/usr/bin/env bash
# deploy/observability/check.sh: check the Prometheus rules and the Grafana
# dashboard, and that every metric they use is one cpn exports.
#
#   deploy/observability/check.sh                   every check (a broker, the built binaries)
#   deploy/observability/check.sh --static          all but metrics-present (no broker, no binaries)
#   RELAY_METRICS_URL=http://10.0.0.7:9464/metrics PRODUCER_METRICS_URL=http://10.0.0.8:8080/metrics \
#     deploy/observability/check.sh                 metrics-present against processes already running
#
# One line per check (ok / FAIL, details indented below a failure, facts
# worth knowing indented below an ok); exits 1
# when any check failed, 0 otherwise. Running it again is harmless.
#
#   promtool          promtool is installed (Debian's prometheus package when missing; its
#                     daemon is kept from starting)
#   rules-syntax      promtool check rules prometheus/cpn-rules.yaml
#   rules-tests       promtool test rules prometheus/cpn-rules.test.yaml
#   rules-metadata    every alert has a severity (critical|warning), a summary, a description and a
#                     runbook_url into docs/operations.md whose anchor is its own name, lower-cased,
#                     used by no other alert; every recorded series an expression reads is recorded
#   dashboard-json    grafana/cpn-dashboard.json parses, is what grafana/generate.py writes, has
#                     schemaVersion >= 39, a prometheus ${datasource} variable used by every
#                     panel and query, and the namespace/job variables
#   dashboard-promql  every panel query and every label_values() selector of the dashboard, with
#                     the Grafana variables replaced, passes promtool check rules
#   metrics-present   every cpn_* name the rules and the dashboard use (histogram _bucket/_sum/
#                     _count mapped to their base) is in the /metrics of cpn-relay or cpn-producer;
#                     exported names nobody uses are listed, not failed
#
# metrics-present starts, on loopback: a mock CRM (cpn-mock-crm), a relay (cpn-relay run) into it,
# and the HTTP ingest (cpn-producer serve), on fresh topics of a Kafka broker; and posts a few
# events, one the CRM rejects (422: dead-lettered), one invalid (400), the first answered 503
# (retried). A labelled metric (a vector) appears in /metrics only once a label set was touched,
# so this traffic is what makes every name appear; a name still absent fails, with a note of
# whether it is defined in the sources (untouched vector) or not at all (a typo). Everything it
# starts is stopped on exit, the topics are deleted. A broker that already answers is used; else
# deploy/kafka/kafka-local starts one and stops it afterwards (KEEP_BROKER=1 keeps it).
#
# Environment: KAFKA_BROKERS (127.0.0.1:${KAFKA_PORT:-9092}; loopback only, the topics are made
# with kafka-local), CPN_BIN (target/debug, built with cargo build when unset), RELAY_METRICS_URL + PRODUCER_METRICS_URL,
# KEEP_BROKER, CHECK_TIMEOUT (seconds to wait for the traffic, 90).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
RULES=$HERE/prometheus/cpn-rules.yaml
TESTS=$HERE/prometheus/cpn-rules.test.yaml
DASH=$HERE/grafana/cpn-dashboard.json
GEN=$HERE/grafana/generate.py
KAFKA_LOCAL=$ROOT/deploy/kafka/kafka-local
BIN=${CPN_BIN:-$ROOT/target/debug}
TIMEOUT=${CHECK_TIMEOUT:-90}
STATIC=0
case ${1:-} in
--static) STATIC=1 ;;
"") ;;
-h | --help)
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit 0
    ;;
*)
    echo "usage: check.sh [--static]" >&2
    exit 2
    ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cpn-obs-check.XXXXXX")
PIDS=()
TOPIC=""
BROKER_STARTED=0
FAILED=0
T0=$(date +%s)

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $TOPIC ]]; then
        KAFKA_PORT=$KPORT "$KAFKA_LOCAL" topics --delete --topic "$TOPIC.*" >/dev/null 2>&1 || true
    fi
    if ((BROKER_STARTED)) && [[ ${KEEP_BROKER:-0} != 1 ]]; then
        KAFKA_PORT=$KPORT "$KAFKA_LOCAL" stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# check NAME COMMAND...: one line, ok or FAIL; a check prints its summary on
# its last stdout line, its complaints before it.
check() {
    local name=$1 start out rc
    shift
    start=$(date +%s)
    # In this shell, not a subshell: processes a check starts stay known to
    # the EXIT trap.
    set +e
    "$@" >"$WORK/check.out" 2>&1 </dev/null
    rc=$?
    set -e
    out=$(cat "$WORK/check.out")
    local last=${out##*$'\n'}
    if ((rc == 0)); then
        printf 'ok    %-17s %s (%ds)\n' "$name" "$last" "$(($(date +%s) - start))"
        printf '%s\n' "$out" | sed -n 's/^info: /      /p'
    else
        printf 'FAIL  %-17s (%ds)\n' "$name" "$(($(date +%s) - start))"
        printf '%s\n' "$out" | sed 's/^/      /'
        FAILED=$((FAILED + 1))
    fi
}

# --- promtool -------------------------------------------------------------

ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        promtool --version 2>&1 | head -1
        return 0
    fi
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "promtool is missing: install Prometheus's promtool (Debian: apt-get install prometheus)"
        return 1
    fi
    # Keep the package's daemon from starting (and from taking :9090).
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    local rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; } \
        >"$WORK/apt.log" 2>&1 || rc=$?
    ((made_policy)) && rm -f "$policy"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    if ((rc != 0)); then
        tail -20 "$WORK/apt.log"
        echo "apt-get install prometheus failed"
        return 1
    fi
    echo "installed: $(promtool --version 2>&1 | head -1)"
}

check_rules_syntax() {
    local out
    out=$(promtool check rules "$RULES" 2>&1) || {
        printf '%s\n' "$out"
        return 1
    }
    printf '%s\n' "$out" | tail -1 | sed 's/^ *//'
}

check_rules_tests() {
    local out
    out=$(promtool test rules "$TESTS" 2>&1) || {
        printf '%s\n' "$out"
        return 1
    }
    echo "$(grep -c '^- name:' "$TESTS") test groups, $(grep -c 'alertname:' "$TESTS") alert evaluations pass"
}

# --- rule metadata (no YAML library needed: the file's layout is plain) ----

check_rules_metadata() {
    python3 - "$RULES" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
base = "https://github.com/cpn/cpn/blob/main/docs/operations.md#"
bad = []
blocks = re.split(r"\n(?=      - (?:alert|record): )", text)
alerts, recorded, anchors = [], set(), {}
for b in blocks:
    m = re.match(r"      - (alert|record): (\S+)", b)
    if not m:
        continue
    kind, name = m.groups()
    if kind == "record":
        recorded.add(name)
        continue
    alerts.append(name)
    sev = re.search(r"\n          severity: (\S+)", b)
    if not sev or sev.group(1) not in ("critical", "warning"):
        bad.append(f"{name}: severity critical|warning missing")
    for key in ("summary", "description", "runbook_url"):
        if not re.search(rf"\n          {key}: \S", b):
            bad.append(f"{name}: annotation {key} missing")
    url = re.search(r"\n          runbook_url: (\S+)", b)
    if url:
        u = url.group(1)
        if u != base + name.lower():
            bad.append(f"{name}: runbook_url {u} is not {base}{name.lower()}")
        anchors.setdefault(u, []).append(name)
for u, names in anchors.items():
    if len(names) > 1:
        bad.append(f"{u} shared by {', '.join(names)}")
used = set(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", re.sub(r"\n\s*- record: \S+", "", text)))
for n in sorted(used - recorded):
    bad.append(f"{n} is read but never recorded")
if len(alerts) != len(set(alerts)):
    bad.append("duplicate alert names")
for b in bad:
    print(b)
print(f"{len(alerts)} alerts, {len(recorded)} recording rules, {len(anchors)} distinct runbook anchors")
sys.exit(1 if bad else 0)
PY
}

# --- dashboard --------------------------------------------------------------

check_dashboard_json() {
    python3 - "$DASH" <<'PY' || return 1
import json, sys
d = json.load(open(sys.argv[1]))
bad = []
if d.get("schemaVersion", 0) < 39:
    bad.append(f"schemaVersion {d.get('schemaVersion')} < 39")
vs = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
ds = vs.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    bad.append("no datasource variable of type prometheus")
for name in ("namespace", "job", "producer_job"):
    if name not in vs:
        bad.append(f"no ${name} variable")
want = {"type": "prometheus", "uid": "${datasource}"}
n = q = 0
for p in d["panels"]:
    if p["type"] == "row":
        continue
    n += 1
    if p.get("datasource") != want:
        bad.append(f"panel {p['title']!r}: datasource is not ${{datasource}}")
    if not p.get("targets"):
        bad.append(f"panel {p['title']!r}: no query")
    for t in p.get("targets", []):
        q += 1
        if t.get("datasource") != want:
            bad.append(f"panel {p['title']!r} query {t['refId']}: datasource is not ${{datasource}}")
for v in ("namespace", "job", "producer_job"):
    if v in vs and vs[v].get("datasource") != want:
        bad.append(f"variable {v}: datasource is not ${{datasource}}")
ids = [p["id"] for p in d["panels"]]
if len(ids) != len(set(ids)):
    bad.append("duplicate panel ids")
for b in bad:
    print(b)
print(f"{n} panels, {q} queries, schemaVersion {d['schemaVersion']}")
sys.exit(1 if bad else 0)
PY
    python3 "$GEN" --check || {
        echo "cpn-dashboard.json differs from what generate.py writes"
        return 1
    }
}

# Each query becomes a recording rule of a throwaway rules file, so that
# promtool's own parser judges it. Grafana's variables get a plausible value.
check_dashboard_promql() {
    python3 - "$DASH" "$WORK/dashboard-rules.yaml" <<'PY' >/dev/null || return 1
import json, re, sys
d = json.load(open(sys.argv[1]))
def subst(e):
    for k, v in (("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h")):
        e = e.replace(k, v)
    return re.sub(r"\$\{?(\w+)\}?", r"x", e)
exprs = []
for p in d["panels"]:
    for t in p.get("targets", []):
        exprs.append((f"{p['title']} / {t['refId']}", t["expr"]))
for v in d["templating"]["list"]:
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", (v.get("query") or {}).get("query", "") if isinstance(v.get("query"), dict) else "")
    if m:
        exprs.append((f"variable {v['name']}", m.group(1)))
with open(sys.argv[2], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (where, e) in enumerate(exprs):
        f.write(f"      # {where}\n      - record: cpn_dashboard_check:expr:{i}\n        expr: {json.dumps(subst(e))}\n")
print(len(exprs))
PY
    local n out
    n=$(grep -c 'record:' "$WORK/dashboard-rules.yaml")
    out=$(promtool check rules "$WORK/dashboard-rules.yaml" 2>&1) || {
        printf '%s\n' "$out"
        local i
        grep -o 'cpn_dashboard_check:expr:[0-9]*' <<<"$out" | sort -u | cut -d: -f3 | while read -r i; do
            grep -B1 "record: cpn_dashboard_check:expr:$i\$" "$WORK/dashboard-rules.yaml" | head -1 | sed "s/^ *# /expr:$i is panel /"
        done
        return 1
    }
    echo "$n expressions parse"
}

# --- metrics-present --------------------------------------------------------

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT SECONDS PID NAME LOG (without a request: the CRM's first answer is scripted)
    local i
    for i in $(seq 1 $(($2 * 5))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || {
            tail -20 "$5"
            echo "$4 exited (log above)"
            return 1
        }
        sleep 0.2
    done
    echo "$4 did not listen on port $1 within $2 s"
    return 1
}

wait_http() { # URL SECONDS PID NAME LOG
    local i
    for i in $(seq 1 $(($2 * 5))); do
        curl -sf -o /dev/null "$1" && return 0
        kill -0 "$3" 2>/dev/null || {
            tail -20 "$5"
            echo "$4 exited (log above)"
            return 1
        }
        sleep 0.2
    done
    tail -20 "$5"
    echo "$4 did not answer $1 within $2 s"
    return 1
}

# The sum of the samples of a metric whose line contains LABEL.
metric_sum() { # FILE NAME LABEL
    awk -v m="$2" -v l="$3" '$1 ~ "^"m"({|$)" && index($1, l) { s += $NF } END { printf "%d", s }' "$1"
}

drive_traffic() {
    local b
    # The debug binaries are built here when CPN_BIN does not name others: `cargo test` builds
    # only the binaries its tests need (not cpn-mock-crm), and a fresh clone has none.
    if [[ -z ${CPN_BIN:-} ]]; then
        (cd "$ROOT" && cargo build --quiet --bins -p cpn-producer -p cpn-relay -p cpn-mock-crm) >&2 || {
            echo "cargo build --bins -p cpn-producer -p cpn-relay -p cpn-mock-crm failed"
            return 1
        }
    fi
    for b in crm relay producer; do
        [[ $b == crm ]] && b=mock-crm
        [[ -x $BIN/cpn-$b ]] || {
            echo "$BIN/cpn-$b is missing: cargo build --bins -p cpn-producer -p cpn-relay -p cpn-mock-crm"
            return 1
        }
    done
    command -v curl >/dev/null || {
        echo "curl is needed"
        return 1
    }
    BROKERS=${KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}
    [[ $BROKERS =~ ^(127\.0\.0\.1|localhost):([0-9]+)$ ]] || {
        echo "KAFKA_BROKERS=$BROKERS: only a loopback broker (127.0.0.1:PORT) is supported (topics are made with kafka-local)"
        return 1
    }
    KPORT=${BASH_REMATCH[2]}
    if ! KAFKA_PORT=$KPORT "$KAFKA_LOCAL" probe >/dev/null 2>&1; then
        echo "no broker on $BROKERS: starting one with kafka-local" >&2
        KAFKA_PORT=$KPORT "$KAFKA_LOCAL" start >"$WORK/kafka-start.log" 2>&1 || {
            tail -20 "$WORK/kafka-start.log"
            return 1
        }
        BROKER_STARTED=1
    fi
    TOPIC=cpn-obs-check-$(date +%s)-$$
    local dlq=$TOPIC.dlq
    if ! KAFKA_PORT=$KPORT "$KAFKA_LOCAL" topics --create --topic "$TOPIC" --partitions 2 >"$WORK/topics.log" 2>&1 ||
        ! KAFKA_PORT=$KPORT "$KAFKA_LOCAL" topics --create --topic "$dlq" --partitions 1 >>"$WORK/topics.log" 2>&1; then
        cat "$WORK/topics.log"
        return 1
    fi

    local crm_port relay_port ingest_port
    crm_port=$(free_port)
    relay_port=$(free_port)
    ingest_port=$(free_port)
    # First request 503 (a retry), the reject-me campaign 422 (dead-lettered).
    "$BIN/cpn-mock-crm" --listen "127.0.0.1:$crm_port" --quiet --script 503 \
        --reject-when "GSW_CAMPAIGN_NAME=cpn-obs-reject:422" >"$WORK/crm.log" 2>&1 &
    PIDS+=($!)
    local crm_pid=$!
    "$BIN/cpn-relay" run --brokers "$BROKERS" --topic "$TOPIC" --group "$TOPIC" \
        --target-url "http://127.0.0.1:$crm_port/crm" --dlq-topic "$dlq" \
        --metrics-listen "127.0.0.1:$relay_port" >"$WORK/relay.log" 2>&1 &
    PIDS+=($!)
    local relay_pid=$!
    "$BIN/cpn-producer" serve --brokers "$BROKERS" --topic "$TOPIC" \
        --listen "127.0.0.1:$ingest_port" >"$WORK/producer.log" 2>&1 &
    PIDS+=($!)
    local producer_pid=$!
    wait_port "$crm_port" 20 "$crm_pid" cpn-mock-crm "$WORK/crm.log" || return 1
    wait_http "http://127.0.0.1:$ingest_port/readyz" 60 "$producer_pid" "cpn-producer serve" "$WORK/producer.log" || return 1
    wait_http "http://127.0.0.1:$relay_port/readyz" 60 "$relay_pid" "cpn-relay run" "$WORK/relay.log" || return 1

    local url=http://127.0.0.1:$ingest_port/v1/contact-processed i code campaign sent=0
    for i in 1 2 3 4 5 6; do
        campaign="Appointment Reminders"
        ((i == 6)) && campaign=cpn-obs-reject
        code=$(curl -s -o "$WORK/post.out" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @- "$url" <<JSON
{"GSW_MESSAGE":"ContactProcessed","GSW_CALL_ATTEMPT_GUID":"8e7d6c5b-4a39-4281-b7c6-d5e4f3a2b1c$i","GSW_PHONE":"+44770090012$i","GSW_PHONE_TYPE":4,"GSW_CHAIN_ID":$((700 + i)),"GSW_CHAIN_N":0,"GSW_RECORD_HANDLE":$((5120 + i)),"GSW_REASON":3,"GSW_CALL_RESULT":28,"GSW_CAMPAIGN_NAME":"$campaign","GSW_CONTACT_MEDIA_TYPE":"sms","GSW_CALLING_LIST":"CL_Reminders_UK","GSW_CAMPAIGN_GROUP_NAME":"Appointment Reminders@SMS","GSW_CAMPAIGN_GROUP_GUID":"c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f","GSW_GROUP_NAME":"SMS Senders","GSW_QUEUE_NAME":"","GSW_DIAL_MODE":2,"GSW_RECORD_TYPE":2,"GSW_RECORD_STATUS":3,"GSW_START_PROCESSING":"1619135999.980"}
JSON
        )
        [[ $code == 200 ]] || {
            cat "$WORK/post.out"
            echo "POST $i: HTTP $code, expected 200"
            return 1
        }
        sent=$((sent + 1))
    done
    code=$(curl -s -o "$WORK/post.out" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary '{"GSW_MESSAGE":"ContactProcessed","GSW_CHAIN_ID":"not a number"}' "$url")
    [[ $code == 400 ]] || {
        echo "invalid POST: HTTP $code, expected 400"
        return 1
    }

    # Until every record is finished and the lag reported (statistics every 5 s).
    local done=0 delivered dead
    for i in $(seq 1 $((TIMEOUT * 2))); do
        curl -sf "http://127.0.0.1:$relay_port/metrics" >"$WORK/relay.metrics" || true
        delivered=$(metric_sum "$WORK/relay.metrics" cpn_relay_deliveries_total 'outcome="delivered"')
        dead=$(metric_sum "$WORK/relay.metrics" cpn_relay_deliveries_total 'outcome="dead_lettered"')
        if ((delivered + dead >= sent)) && grep -q '^cpn_relay_consumer_lag{' "$WORK/relay.metrics"; then
            done=1
            break
        fi
        sleep 0.5
    done
    ((done)) || {
        tail -20 "$WORK/relay.log"
        echo "after ${TIMEOUT} s: $delivered delivered, $dead dead-lettered of $sent (or no cpn_relay_consumer_lag yet)"
        return 1
    }
    curl -sf "http://127.0.0.1:$relay_port/metrics" >"$WORK/relay.metrics"
    curl -sf "http://127.0.0.1:$ingest_port/metrics" >"$WORK/producer.metrics"
    echo "traffic: $sent events posted, $delivered delivered, $dead dead-lettered, 1 rejected (400)" >"$WORK/traffic.note"
}

check_metrics_present() {
    local note
    if [[ -n ${RELAY_METRICS_URL:-} || -n ${PRODUCER_METRICS_URL:-} ]]; then
        [[ -n ${RELAY_METRICS_URL:-} && -n ${PRODUCER_METRICS_URL:-} ]] || {
            echo "set both RELAY_METRICS_URL and PRODUCER_METRICS_URL"
            return 1
        }
        curl -sf "$RELAY_METRICS_URL" >"$WORK/relay.metrics" || {
            echo "cannot scrape $RELAY_METRICS_URL"
            return 1
        }
        curl -sf "$PRODUCER_METRICS_URL" >"$WORK/producer.metrics" || {
            echo "cannot scrape $PRODUCER_METRICS_URL"
            return 1
        }
        note="scraped the given processes (no traffic driven)"
    else
        drive_traffic || return 1
        note=$(cat "$WORK/traffic.note")
    fi
    python3 - "$RULES" "$DASH" "$WORK/relay.metrics" "$WORK/producer.metrics" "$ROOT" "$note" <<'PY'
import re, subprocess, sys
rules, dash, relay, producer, root, note = sys.argv[1:]
NAME = re.compile(r"(?<![A-Za-z0-9_:])cpn_[a-z_]+(?![A-Za-z0-9_:])")
used = {}
for path in (rules, dash):
    for n in NAME.findall(open(path).read()):
        used.setdefault(n, set()).add(path.rsplit("/", 1)[-1])
exported = {}
for path, who in ((relay, "cpn-relay"), (producer, "cpn-producer")):
    for line in open(path):
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            exported[m.group(1)] = (m.group(2), who)
def base(n):
    m = re.fullmatch(r"(.+)_(bucket|sum|count)", n)
    if m and exported.get(m.group(1), ("",))[0] in ("histogram", "summary"):
        return m.group(1)
    if n not in exported and m:
        return m.group(1)
    return n
used_base = {}
for n, where in used.items():
    used_base.setdefault(base(n), set()).update(where)
missing = sorted(set(used_base) - set(exported))
for n in missing:
    src = subprocess.run(["grep", "-rlF", f'"{n}"', f"{root}/relay/src", f"{root}/producer/src"],
                         capture_output=True, text=True).stdout.split()
    why = (f"defined in {', '.join(s[len(root)+1:] for s in src)} but not in /metrics: a vector no traffic touched"
           if src else "defined nowhere in relay/src or producer/src")
    print(f"used, not exported: {n} (in {', '.join(sorted(used_base[n]))}): {why}")
unused = sorted(set(exported) - set(used_base))
print(f"info: exported, unused: {' '.join(unused) if unused else '(none)'}")
defined = set()
for src in ("relay/src/observe/metrics.rs", "producer/src/metrics.rs"):
    try:
        defined.update(re.findall(r'"(cpn_[a-z_]*[a-z])"', open(f"{root}/{src}").read()))
    except OSError:
        pass
silent = sorted(defined - set(exported))
print(f"info: defined in the sources, absent from /metrics: {' '.join(silent) if silent else '(none)'}")
print(f"{len(used_base)} names used, {len(exported)} exported ({sum(1 for v in exported.values() if v[1] == 'cpn-relay')} relay,"
      f" {sum(1 for v in exported.values() if v[1] == 'cpn-producer')} producer), {len(missing)} missing, {len(unused)} unused; {note}")
sys.exit(1 if missing else 0)
PY
}

# --- run ----------------------------------------------------------------------

check promtool ensure_promtool
if command -v promtool >/dev/null 2>&1; then
    check rules-syntax check_rules_syntax
    check rules-tests check_rules_tests
fi
check rules-metadata check_rules_metadata
check dashboard-json check_dashboard_json
command -v promtool >/dev/null 2>&1 && check dashboard-promql check_dashboard_promql
((STATIC)) || check metrics-present check_metrics_present

if ((FAILED)); then
    echo "$FAILED check(s) failed ($(($(date +%s) - T0)) s)"
    exit 1
fi
echo "all checks passed ($(($(date +%s) - T0)) s)"
