#!/usr/bin/env python3
"""Static checks of deploy/prometheus/ and deploy/grafana/ with promtool.

What is checked (each check prints ok/FAIL; any FAIL makes the test fail):
  - promtool is installed (scripts/install-deps.sh installs Debian's package `prometheus`): a
    missing promtool is a failure, not a skip, as a missing redis-server is for the fleet tests;
  - `promtool check config deploy/prometheus/prometheus.yml` (which checks its rule files too)
    and `promtool check rules deploy/prometheus/alerts.yaml` pass;
  - `promtool test rules tests/e2e/prometheus_alerts_test.yaml` passes, and it makes every alert
    fire at least once and shows it silent at least once;
  - every alert has a severity (critical or warning), a summary, a description and a `runbook`
    annotation docs/OPERATIONS.md#ANCHOR, where ANCHOR is a heading of that page's "Alerts and
    what to do" section, and every heading there is an alert;
  - every PromQL expression of deploy/grafana/flightcache.json (panel targets and query
    variables, Grafana's variables replaced by values) parses: promtool checks them as recording
    rules;
  - the dashboard: schemaVersion 36 or later, a datasource variable DS_PROMETHEUS of type
    prometheus that every panel and target uses, unique panel ids and refIds, panels inside the
    24-column grid and not overlapping;
  - self-test: promtool rejects a rule whose expression does not parse.
Which metric names the expressions use is checked against a running server by
dashboard_metrics_test.py.

Usage: monitoring_static_test.py --repo=DIR [--promtool=BIN]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import monitoring_files  # noqa: E402  (beside this file)

import yaml  # noqa: E402

ALERT_TESTS = "tests/e2e/prometheus_alerts_test.yaml"
OPERATIONS = "docs/OPERATIONS.md"
RUNBOOK_SECTION = "Alerts and what to do"

from check_report import check, fail, ok, summary  # noqa: E402  (beside this file)


def promtool_run(promtool, args, cwd):
    r = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                       stdin=subprocess.DEVNULL)
    return r.returncode, (r.stdout + r.stderr).strip()


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_headings(ops_text):
    """Anchors of the ### headings inside the RUNBOOK_SECTION ## section."""
    anchors = []
    inside = False
    for line in ops_text.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == RUNBOOK_SECTION
        elif inside and line.startswith("### "):
            anchors.append(github_anchor(line[4:]))
    return anchors


def check_promtool(promtool, repo):
    rc, out = promtool_run(promtool, ["check", "config", monitoring_files.PROMETHEUS_CONFIG], repo)
    check(rc == 0, f"promtool check config {monitoring_files.PROMETHEUS_CONFIG}"
          + ("" if rc == 0 else f":\n{out}"))
    rc, out = promtool_run(promtool, ["check", "rules", monitoring_files.ALERTS], repo)
    check(rc == 0, f"promtool check rules {monitoring_files.ALERTS}" + ("" if rc == 0 else f":\n{out}"))
    rc, out = promtool_run(promtool, ["test", "rules", ALERT_TESTS], repo)
    check(rc == 0, f"promtool test rules {ALERT_TESTS}" + ("" if rc == 0 else f":\n{out}"))


def check_alerts(repo):
    rules = monitoring_files.alert_rules(repo)
    alerts = [r for r in rules if "alert" in r]
    check(len(alerts) >= 5, f"{monitoring_files.ALERTS} has {len(alerts)} alerts")
    anchors = runbook_headings(monitoring_files.read(os.path.join(repo, OPERATIONS)))
    check(bool(anchors), f"{OPERATIONS} has a '{RUNBOOK_SECTION}' section with ### headings")
    for rule in alerts:
        name = rule["alert"]
        labels = rule.get("labels") or {}
        notes = rule.get("annotations") or {}
        check(labels.get("severity") in ("critical", "warning"),
              f"{name}: severity {labels.get('severity')!r} is critical or warning")
        check(bool(notes.get("summary")) and bool(notes.get("description")),
              f"{name}: has a summary and a description")
        runbook = notes.get("runbook", "")
        m = re.fullmatch(re.escape(OPERATIONS) + r"#([a-z0-9_-]+)", runbook)
        check(m is not None and m.group(1) in anchors,
              f"{name}: runbook {runbook!r} is a heading of {OPERATIONS}, '{RUNBOOK_SECTION}'")
    names = {github_anchor(r["alert"]) for r in alerts}
    extra = sorted(set(anchors) - names)
    check(not extra, f"every runbook heading is an alert" + (f" (not alerts: {extra})" if extra else ""))

    tests = yaml.safe_load(monitoring_files.read(os.path.join(repo, ALERT_TESTS))) or {}
    fired, silent = set(), set()
    for case in tests.get("tests", []):
        for t in case.get("alert_rule_test", []):
            (fired if t.get("exp_alerts") else silent).add(t.get("alertname"))
    for rule in alerts:
        check(rule["alert"] in fired and rule["alert"] in silent,
              f"{ALERT_TESTS} makes {rule['alert']} fire and shows it silent")


def check_dashboard_promql(promtool, repo, workdir):
    queries = monitoring_files.dashboard_queries(repo)
    check(len(queries) >= 20, f"{monitoring_files.DASHBOARD} has {len(queries)} queries")
    rules = [{"record": f"dashboard:query_{i}", "expr": monitoring_files.grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(queries)]
    path = os.path.join(workdir, "dashboard-rules.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    rc, out = promtool_run(promtool, ["check", "rules", path], workdir)
    if rc != 0:
        for i, (where, expr) in enumerate(queries):
            if re.search(rf"\bdashboard:query_{i}\b", out):
                fail(f"{monitoring_files.DASHBOARD}: {where} does not parse: {expr}")
    check(rc == 0, f"promtool parses every dashboard expression ({len(queries)})"
          + ("" if rc == 0 else f":\n{out}"))

    # Self-test: the same check rejects an expression that does not parse.
    bad = os.path.join(workdir, "bad-rules.yaml")
    with open(bad, "w") as f:
        yaml.safe_dump({"groups": [{"name": "bad", "rules": [
            {"record": "dashboard:bad", "expr": "sum(rate(flightcache_cache_hits_total[5m])"}]}]}, f)
    rc, out = promtool_run(promtool, ["check", "rules", bad], workdir)
    check(rc != 0 and "dashboard:bad" in out, "self-test: promtool rejects an unbalanced expression")


def check_dashboard_structure(repo):
    where = monitoring_files.DASHBOARD
    dash = monitoring_files.load_dashboard(repo)
    check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
          f"{where}: schemaVersion {dash.get('schemaVersion')}")
    check(bool(dash.get("uid")) and bool(dash.get("title")), f"{where}: has a uid and a title")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("DS_PROMETHEUS", {})
    check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
          f"{where}: datasource variable DS_PROMETHEUS of type prometheus")
    want = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids, boxes = set(), []
    for panel in monitoring_files.all_panels(dash):
        pid, title = panel.get("id"), panel.get("title")
        if not isinstance(pid, int) or pid in ids:
            fail(f"{where}: panel id {pid} ({title}) is not a unique number")
        ids.add(pid)
        g = panel.get("gridPos", {})
        inside = all(isinstance(g.get(k), int) for k in "xywh") and g["x"] >= 0 and g["w"] > 0 \
            and g["x"] + g["w"] <= 24 and g["y"] >= 0 and g["h"] > 0
        if not inside:
            fail(f"{where}: panel {pid} ({title}) gridPos {g} is not inside the 24-column grid")
            continue
        for other_id, o in boxes:
            if g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"] and \
               g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"]:
                fail(f"{where}: panel {pid} ({title}) overlaps panel {other_id}")
        boxes.append((pid, g))
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        refs = [t.get("refId") for t in targets]
        if not (targets and panel.get("datasource") == want
                and all(t.get("datasource") == want for t in targets)
                and len(set(refs)) == len(refs) and all(t.get("expr") for t in targets)):
            fail(f"{where}: panel {pid} ({title}): needs targets with an expr and unique refIds, "
                 f"all on datasource {want}")
    check(len(ids) >= 20, f"{where}: {len(ids)} panels, ids unique, inside the grid, on ${{DS_PROMETHEUS}}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--promtool")
    opts = ap.parse_args()
    repo = os.path.abspath(opts.repo)

    # PATH first, then Debian's place (ctest may run with a PATH that lacks /usr/bin).
    promtool = opts.promtool or shutil.which("promtool") or "/usr/bin/promtool"
    if not os.access(promtool, os.X_OK):
        promtool = None
    check_alerts(repo)
    check_dashboard_structure(repo)
    if promtool is None:
        fail("promtool is not installed (not in PATH, no /usr/bin/promtool): "
             "scripts/install-deps.sh installs it (Debian package prometheus)")
    else:
        ok(f"promtool is {promtool}")
        check_promtool(promtool, repo)
        with tempfile.TemporaryDirectory(prefix="flightcache-monitoring-test.") as workdir:
            check_dashboard_promql(promtool, repo, workdir)

    return summary("all monitoring checks passed")


if __name__ == "__main__":
    sys.exit(main())
