"""The PromQL in deploy/grafana/flightcache.json and deploy/prometheus/alerts.yaml, for the tests
monitoring_static_test.py and dashboard_metrics_test.py (imported from their directory).

  dashboard_queries(repo)   [(where, expr)] of every panel target and query variable
  alert_rules(repo)         the alerting rules (dicts as in the YAML)
  grafana_to_promql(expr)   a panel's expression with Grafana's variables replaced by values
                            Prometheus accepts ($__rate_interval -> 5m, "$job" -> "x")
  metric_names(expr)        the metric names a PromQL expression selects
"""

import json
import os
import re

import yaml

DASHBOARD = "deploy/grafana/flightcache.json"
ALERTS = "deploy/prometheus/alerts.yaml"
PROMETHEUS_CONFIG = "deploy/prometheus/prometheus.yml"


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_dashboard(repo):
    return json.loads(read(os.path.join(repo, DASHBOARD)))


def all_panels(dashboard):
    """Every panel, rows' nested panels (collapsed rows keep theirs inside) included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _variable_query(variable):
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return query or ""


def dashboard_queries(repo):
    """[(where, PromQL)] for every panel target and every query variable's label_values()."""
    dashboard = load_dashboard(repo)
    out = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            out.append((f"panel {panel.get('id')} '{panel.get('title')}' {target.get('refId')}",
                        target.get("expr", "")))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = _variable_query(variable)
        # label_values(SERIES_SELECTOR, LABEL): the selector is PromQL; label_values(LABEL) has none.
        m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query, re.S)
        if m:
            out.append((f"variable ${variable['name']}", m.group(1)))
        elif not re.fullmatch(r"\s*label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query):
            out.append((f"variable ${variable['name']}", query))
    return out


def alert_rules(repo):
    loaded = yaml.safe_load(read(os.path.join(repo, ALERTS))) or {}
    return [rule for group in loaded.get("groups", []) for rule in group.get("rules", [])]


# Grafana's built-in interval variables, as Prometheus durations.
_INTERVALS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def grafana_to_promql(expr):
    def value(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return _INTERVALS.get(name, "x")
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


# Words that PromQL reserves; everything else that is not a function call is a metric name.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan"}


def metric_names(expr):
    """The metric names `expr` selects (a PromQL expression, Grafana variables allowed)."""
    s = grafana_to_promql(expr)
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', s)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery windows
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", s)  # offset 1h
    s = re.sub(r"(?<![A-Za-z0-9_:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", " ", s)  # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if m.group(0).lower() in _KEYWORDS:
            continue
        names.add(m.group(0))
    return names
