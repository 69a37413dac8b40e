#!/usr/bin/env python3
"""Writes cpn-dashboard.json, the Grafana dashboard of cpn-relay and cpn-producer.

    python3 deploy/observability/grafana/generate.py          # rewrite the JSON
    python3 deploy/observability/grafana/generate.py --check  # exit 1 if it is stale

Edit this file, not the JSON (check.sh fails when they disagree). Standard
library only. Selectors: $namespace, $job (relay releases: one job per
target, never summed together) and $producer_job; the data source is the
$datasource variable.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("cpn-dashboard.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
R = '{namespace=~"$namespace", job=~"$job"}'
P = '{namespace=~"$namespace", job=~"$producer_job"}'
RI = "$__rate_interval"
DELIVERED = 'outcome="delivered"'
S5XX = 'status=~"5.."'


def relay(metric, extra=""):
    """A relay metric selected by the dashboard's variables."""
    sel = R if not extra else R[:-1] + ", " + extra + "}"
    return metric + sel


def producer(metric, extra=""):
    sel = P if not extra else P[:-1] + ", " + extra + "}"
    return metric + sel


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self._newline()
        self.panels.append({
            "type": "row", "id": self._id(), "title": title, "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": [],
        })
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def targets(*queries):
    out = []
    for i, (expr, legend) in enumerate(queries):
        out.append({"datasource": DS, "refId": chr(ord("A") + i), "expr": expr,
                    "legendFormat": legend, "range": True})
    return out


def timeseries(title, description, queries, unit="short", stack=False, mappings=None,
               overrides=None, min0=True):
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10 if not stack else 40,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
    defaults = {"unit": unit, "custom": custom}
    if min0:
        defaults["min"] = 0
    if mappings:
        defaults["mappings"] = mappings
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": targets(*queries),
    }


def stat(title, description, expr, unit="short", thresholds=None, mappings=None):
    steps = thresholds or [{"color": "green", "value": None}]
    return {
        "type": "stat", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or [],
                                     "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "textMode": "auto"},
        "targets": targets((expr, "")),
    }


def value_map(pairs):
    """Grafana value mappings: [(value, text, color)]."""
    return [{"type": "value", "options": {str(v): {"text": t, "color": c, "index": i}
                                          for i, (v, t, c) in enumerate(pairs)}}]


def state_timeline(title, description, expr, legend, pairs):
    return {
        "type": "state-timeline", "title": title, "description": description, "datasource": DS,
        "fieldConfig": {"defaults": {"mappings": value_map(pairs),
                                     "color": {"mode": "thresholds"},
                                     "thresholds": {"mode": "absolute", "steps": [
                                         {"color": "green", "value": None}]}},
                        "overrides": []},
        "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
                    "legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets((expr, legend)),
    }


def quantiles(metric, by, qs=(0.5, 0.9, 0.99), legend_prefix="{{job}}"):
    out = []
    for q in qs:
        expr = (f"histogram_quantile({q}, sum by ({by}, le) "
                f"(rate({metric}[{RI}])))")
        out.append((expr, f"{legend_prefix} p{int(q * 100)}"))
    return out


CIRCUIT = [(0, "closed", "green"), (1, "open", "red"), (2, "half-open", "orange")]
FLAG = [(0, "no", "green"), (1, "yes", "red")]


def panels():
    L = Layout()

    L.row("Overview")
    L.add(stat("Delivered / s", "Records acknowledged 2xx by the target, all selected relays.",
               f'sum(rate({relay("cpn_relay_deliveries_total", DELIVERED)}[{RI}]))',
               unit="reqps"), 4, 4)
    L.add(stat("Consumer lag", "Records in Kafka not yet finished, all partitions (each counted once).",
               f'sum(max by (job, topic, partition) ({relay("cpn_relay_consumer_lag")}))',
               thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1000},
                           {"color": "red", "value": 10000}]), 4, 4)
    L.add(stat("Dead-lettered (1 h)", "Records written to the dead-letter topics in the last hour.",
               f'sum(increase({relay("cpn_relay_dead_letters_total")}[1h]))',
               thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]), 4, 4)
    L.add(stat("Circuits not closed", "Relay processes whose circuit breaker is open or half-open.",
               f'count({relay("cpn_relay_circuit_state")} > 0) or vector(0)',
               thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]), 4, 4)
    L.add(stat("Target rejecting", "Relay processes holding records because the target rejects every chain alike.",
               f'count({relay("cpn_relay_target_rejecting")} > 0) or vector(0)',
               thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]), 4, 4)
    L.add(stat("Ingest 5xx", "Share of HTTP ingest requests answered 5xx (503: Kafka did not acknowledge in time).",
               f'sum(rate({producer("cpn_producer_http_requests_total", S5XX)}[{RI}])) '
               f'/ sum(rate({producer("cpn_producer_http_requests_total")}[{RI}]))',
               unit="percentunit",
               thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.05}]), 4, 4)

    L.row("Relay: delivery")
    L.add(timeseries(
        "Throughput by outcome",
        "Final outcomes per second: delivered (2xx), skipped (filtered out), dead_lettered.",
        [(f'sum by (job, outcome) (rate({relay("cpn_relay_deliveries_total")}[{RI}]))',
          "{{job}} {{outcome}}")], unit="reqps", stack=True), 12, 8)
    L.add(timeseries(
        "End-to-end latency",
        "From the event's GSW_TIMESTAMP (set by the dialer or the ingest) to the target's 2xx.",
        quantiles(relay("cpn_relay_end_to_end_seconds_bucket"), "job"), unit="s"), 12, 8)
    L.add(timeseries(
        "HTTP attempts by class",
        "Every attempt, first tries and retries: 2xx, 3xx, 4xx, 5xx, other, connect_error, timeout, transport_error.",
        [(f'sum by (job, class) (rate({relay("cpn_relay_attempts_total")}[{RI}]))',
          "{{job}} {{class}}")], unit="reqps", stack=True), 8, 8)
    L.add(timeseries(
        "Retries",
        "Attempts that were not the first of their record.",
        [(f'sum by (job) (rate({relay("cpn_relay_retries_total")}[{RI}]))', "{{job}}")],
        unit="reqps"), 8, 8)
    L.add(timeseries(
        "Attempt duration p99 by class",
        "One HTTP attempt, request sent to response read (or the error).",
        [(f'histogram_quantile(0.99, sum by (job, class, le) '
          f'(rate({relay("cpn_relay_attempt_duration_seconds_bucket")}[{RI}])))',
          "{{job}} {{class}}")], unit="s"), 8, 8)
    L.add(timeseries(
        "Dead letters by reason",
        "Records written to the dead-letter topic: http_rejected, http_redirect, retries_exhausted, invalid_payload.",
        [(f'sum by (job, reason) (rate({relay("cpn_relay_dead_letters_total")}[{RI}]))',
          "{{job}} {{reason}}")], unit="reqps", stack=True), 12, 8)
    L.add(timeseries(
        "Dead-letter write errors and commit errors",
        "Failed writes to the dead-letter topic (retried; the partition waits) and failed offset commits.",
        [(f'sum by (job, pod) (increase({relay("cpn_relay_dlq_write_errors_total")}[{RI}]))',
          "{{job}} {{pod}} DLQ write errors"),
         (f'sum by (job, pod) (increase({relay("cpn_relay_commit_errors_total")}[{RI}]))',
          "{{job}} {{pod}} commit errors")]), 12, 8)

    L.row("Relay: circuit and guards")
    L.add(state_timeline(
        "Circuit state",
        "Per relay process: closed, open (target down for everybody: paused, Kafka holds the backlog), half-open (probing).",
        f'max by (job, pod) ({relay("cpn_relay_circuit_state")})', "{{job}} {{pod}}", CIRCUIT), 12, 7)
    L.add(state_timeline(
        "Target rejecting (rejection guard)",
        "The same 4xx/3xx from many chains in a row: records are held, not dead-lettered. Wrong URL, revoked key, missing client certificate.",
        f'max by (job, pod) ({relay("cpn_relay_target_rejecting")})', "{{job}} {{pod}}", FLAG), 12, 7)
    L.add(state_timeline(
        "Stalled",
        "Unfinished records with nothing in flight and nothing scheduled (/readyz 503; exits 3 by default).",
        f'max by (job, pod) ({relay("cpn_relay_stalled")})', "{{job}} {{pod}}", FLAG), 12, 7)
    L.add(timeseries(
        "Circuit openings",
        "Times a circuit opened, per interval.",
        [(f'sum by (job, pod) (increase({relay("cpn_relay_circuit_opened_total")}[{RI}]))',
          "{{job}} {{pod}}")]), 12, 7)

    L.row("Relay: Kafka")
    L.add(timeseries(
        "Consumer lag per partition",
        "Records behind the partition's end (librdkafka statistics, every 5 s). Counted once when two replicas report a partition during a rebalance.",
        [(f'max by (job, topic, partition) ({relay("cpn_relay_consumer_lag")})',
          "{{job}} {{topic}}/{{partition}}")]), 12, 8)
    L.add(timeseries(
        "Consumed per partition",
        "Records taken from Kafka per second.",
        [(f'sum by (job, topic, partition) (rate({relay("cpn_relay_consumed_total")}[{RI}]))',
          "{{job}} {{topic}}/{{partition}}")], unit="reqps"), 12, 8)
    L.add(timeseries(
        "Partitions",
        "Assigned to each process, paused (circuit open or draining), and the topic's partition count.",
        [(f'sum by (job, pod) ({relay("cpn_relay_assigned_partitions")})', "{{job}} {{pod}} assigned"),
         (f'sum by (job, pod) ({relay("cpn_relay_paused_partitions")})', "{{job}} {{pod}} paused"),
         (f'max by (job) ({relay("cpn_relay_topic_partitions")})', "{{job}} topic partitions")]), 12, 8)
    # No panel of cpn_relay_committed_offset (set on every commit, periodic
    # and synchronous): raw offsets do not compare across partitions, and the
    # lag panel shows what an operator reads from them.

    L.row("Relay: resources")
    L.add(timeseries(
        "In flight",
        "Records taken from Kafka and not finished, per process.",
        [(f'sum by (job, pod) ({relay("cpn_relay_in_flight")})', "{{job}} {{pod}}")]), 8, 8)
    L.add(timeseries(
        "Memory budget",
        "Bytes of records taken and not finished, against concurrency.memory_budget_bytes; and librdkafka's prefetch bound (per partition times partitions assigned).",
        [(f'sum by (job, pod) ({relay("cpn_relay_memory_taken_bytes")})', "{{job}} {{pod}} taken"),
         (f'sum by (job, pod) ({relay("cpn_relay_memory_budget_bytes")})', "{{job}} {{pod}} budget"),
         (f'sum by (job, pod) ({relay("cpn_relay_prefetch_partition_bytes")} * '
          f'{relay("cpn_relay_assigned_partitions")})', "{{job}} {{pod}} prefetch bound")],
        unit="bytes"), 8, 8)
    L.add(timeseries(
        "Request budget",
        "Each process's share of target.budget (0 = no limit) against the attempts it makes.",
        [(f'sum by (job, pod) ({relay("cpn_relay_budget_requests_per_second")})', "{{job}} {{pod}} budget"),
         (f'sum by (job, pod) (rate({relay("cpn_relay_attempts_total")}[{RI}]))', "{{job}} {{pod}} attempts")],
        unit="reqps"), 8, 8)

    L.row("Producer: HTTP ingest and Kafka")
    L.add(timeseries(
        "Ingest requests by status",
        "HTTP ingest requests per second by status: 2xx after Kafka acknowledged, 400 invalid, 503 Kafka did not acknowledge in time.",
        [(f'sum by (job, status) (rate({producer("cpn_producer_http_requests_total")}[{RI}]))',
          "{{job}} {{status}}")], unit="reqps", stack=True), 8, 8)
    L.add(timeseries(
        "Ingest 5xx ratio",
        "Share of ingest requests answered 5xx (alert CpnIngestUnavailable above 5%).",
        [(f'sum by (job) (rate({producer("cpn_producer_http_requests_total", S5XX)}[{RI}])) '
          f'/ sum by (job) (rate({producer("cpn_producer_http_requests_total")}[{RI}]))', "{{job}}")],
        unit="percentunit"), 8, 8)
    L.add(timeseries(
        "Ingest request duration p99",
        "From the request's arrival to its response, by route.",
        [(f'histogram_quantile(0.99, sum by (job, route, le) '
          f'(rate({producer("cpn_producer_http_request_duration_seconds_bucket")}[{RI}])))',
          "{{job}} {{route}}")], unit="s"), 8, 8)
    L.add(timeseries(
        "Events published, failed, rejected",
        "Published: acknowledged by Kafka (acks=all). Failed: handed to Kafka and not acknowledged (the caller got an error). Rejected: invalid, never sent.",
        [(f'sum by (job) (rate({producer("cpn_producer_events_published_total")}[{RI}]))', "{{job}} published"),
         (f'sum by (job) (rate({producer("cpn_producer_events_failed_total")}[{RI}]))', "{{job}} failed"),
         (f'sum by (job) (rate({producer("cpn_producer_events_rejected_total")}[{RI}]))', "{{job}} rejected")],
        unit="reqps"), 8, 8)
    L.add(timeseries(
        "Kafka acknowledgement latency",
        "From handing an event to librdkafka to Kafka's acknowledgement.",
        quantiles(producer("cpn_producer_ack_duration_seconds_bucket"), "job"), unit="s"), 8, 8)
    L.add(timeseries(
        "Awaiting acknowledgement, published bytes",
        "Events handed to Kafka and not yet acknowledged; bytes of event bodies acknowledged per second.",
        [(f'sum by (job, pod) ({producer("cpn_producer_events_in_flight")})', "{{job}} {{pod}} in flight"),
         (f'sum by (job) (rate({producer("cpn_producer_published_bytes_total")}[{RI}]))', "{{job}} bytes/s")],
        overrides=[{"matcher": {"id": "byRegexp", "options": ".*bytes/s"},
                    "properties": [{"id": "unit", "value": "Bps"},
                                   {"id": "custom.axisPlacement", "value": "right"}]}]), 8, 8)
    return L.panels


def variable(name, label, query, regex=""):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": f"{name}-query"}, "definition": query,
        "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "regex": regex, "hide": 0, "options": [],
    }


def dashboard():
    return {
        "title": "cpn: relay and ingest",
        "uid": "cpn-overview",
        "description": "cpn-relay (Kafka to the customer's web server) and cpn-producer (HTTP ingest to Kafka). Generated by deploy/observability/grafana/generate.py.",
        "tags": ["cpn", "kafka"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [{"title": "Runbook", "type": "link", "icon": "doc", "targetBlank": True,
                   "url": "https://github.com/cpn/cpn/blob/main/docs/operations.md"}],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "refresh": 1, "regex": "", "hide": 0, "multi": False,
             "includeAll": False, "current": {}, "options": []},
            variable("namespace", "Namespace", "label_values(cpn_relay_in_flight, namespace)"),
            variable("job", "Relay (job)", 'label_values(cpn_relay_in_flight{namespace=~"$namespace"}, job)'),
            variable("producer_job", "Ingest (job)",
                     'label_values(cpn_producer_events_in_flight{namespace=~"$namespace"}, job)'),
        ]},
        "panels": panels(),
    }


def render():
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main():
    text = render()
    if sys.argv[1:] == ["--check"]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
