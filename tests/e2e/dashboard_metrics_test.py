#!/usr/bin/env python3
"""Every metric the Grafana dashboard and the alerting rules query is one the server exports.

Starts the built flightcache-server on free ports (port 0; the ports are read from its start-up
log line) with two flightcache-origin replicas (so the per-replica series exist) and a --fleet
Redis address nobody listens on (the fleet tier's series exist without Redis: it is never a
dependency), drives Gets, a BatchGet mix and Invalidates through flightcache-cli and
flightcache-loadgen so the labelled series exist, scrapes /metrics, and checks:
  - every metric name in deploy/grafana/flightcache.json's queries (panel targets and query
    variables) and in deploy/prometheus/alerts.yaml's expressions is a series the scrape has
    (a histogram is queried as NAME_bucket, NAME_sum or NAME_count); `up`, which Prometheus makes
    itself, is the only other name allowed;
  - every expression selects at least one metric (a name hidden in {__name__=...} is not checked);
  - every flightcache_* family the server exports is on the dashboard (but those listed in
    NOT_GRAPHED, with the reason);
  - self-test: the name extraction finds a bogus name, and the check reports it.
Every wait is bounded; the processes started are stopped by PID.

Usage: dashboard_metrics_test.py --repo=DIR --server=BIN --cli=BIN --origin=BIN --loadgen=BIN
"""

import argparse
import os
import re
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import monitoring_files  # noqa: E402  (beside this file)

# Series Prometheus adds to every scrape target itself.
PROMETHEUS_NAMES = {"up"}
# flightcache_* families the dashboard need not show, and why.
NOT_GRAPHED = {}
from check_report import check, fail, ok, summary  # noqa: E402  (beside this file)
from e2e_processes import Processes, free_port, run, wait_for  # noqa: E402  (beside this file)


def scrape(opts, workdir):
    """The /metrics text of a server that has served a mix of calls, or None."""
    procs = Processes(workdir)
    try:
        replicas = []
        for name in ("origin-a", "origin-b"):
            port_file = os.path.join(workdir, f"{name}.port")
            proc, log = procs.start(name, [opts.origin, "--listen=127.0.0.1:0",
                                           f"--port-file={port_file}", "--latency=fixed:2ms",
                                           "--log-interval=0", "--drain-timeout=1s"])
            port = wait_for(f"{name} writes its port", proc, log, lambda _, f=port_file: (
                monitoring_files.read(f).strip() or None) if os.path.exists(f) else None)
            if port is None:
                return None
            replicas.append(f"127.0.0.1:{int(port)}")
        # Nothing listens on the fleet port: the tier's series exist, every call to it fails
        # fast, and each load goes on alone.
        server, log = procs.start("server", [
            opts.server, "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
            "--origin=grpc://" + ",".join(replicas), f"--fleet=redis://127.0.0.1:{free_port()}",
            "--hedge-delay=1ms", "--hedge-budget=1", "--drain-timeout=2s"])
        m = wait_for("the server logs its ports", server, log, lambda text: re.search(
            r"listening on \S+ \(port (\d+)\), metrics on \S+ \(port (\d+)\)", text))
        if m is None:
            return None
        target = f"--target=127.0.0.1:{m.group(1)}"
        ok(f"server on port {m.group(1)}, metrics on {m.group(2)}, origin replicas {replicas}")
        for key in ("k1", "k2", "k1"):
            run([opts.cli, target, "get", key], f"flightcache-cli get {key}")
        run([opts.cli, target, "invalidate", "k1"], "flightcache-cli invalidate k1")
        run([opts.cli, target, "stats"], "flightcache-cli stats")
        run([opts.loadgen, target, "--requests=60", "--concurrency=4", "--keys=20",
             "--distribution=uniform", "--batch=3", "--batch-share=0.3",
             "--invalidate-share=0.1", "--deadline=5s", "--progress=off"],
            "flightcache-loadgen: 60 calls of Get, BatchGet and Invalidate")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{m.group(2)}/metrics",
                                        timeout=10) as resp:
                text = resp.read().decode()
        except OSError as e:
            fail(f"scrape /metrics: {e}")
            return None
        rc = procs.stop(server)
        check(rc == 0, f"the server exits 0 on SIGTERM ({rc})")
        return text
    finally:
        procs.stop_all()


def exported(text):
    """(series names in the scrape, {family: type})."""
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    series = set(re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{| )", text, re.M))
    return series, families


def family_of(name, families):
    for suffix in ("_bucket", "_sum", "_count", ""):
        if name.endswith(suffix) and name[:len(name) - len(suffix)] in families:
            return name[:len(name) - len(suffix)]
    return None


def unknown_names(expressions, known):
    """{where: sorted unknown names}, and the expressions that select no metric."""
    unknown, empty = {}, []
    for where, expr in expressions:
        names = monitoring_files.metric_names(expr)
        if not names:
            empty.append(where)
        bad = sorted(names - known)
        if bad:
            unknown[where] = bad
    return unknown, empty


def main():
    ap = argparse.ArgumentParser()
    for flag in ("repo", "server", "cli", "origin", "loadgen"):
        ap.add_argument(f"--{flag}", required=True)
    opts = ap.parse_args()
    repo = os.path.abspath(opts.repo)

    dashboard = monitoring_files.dashboard_queries(repo)
    alerts = [(f"alert {r.get('alert')}", r.get("expr", ""))
              for r in monitoring_files.alert_rules(repo) if "alert" in r]
    check(len(dashboard) >= 20, f"{monitoring_files.DASHBOARD}: {len(dashboard)} queries")
    check(len(alerts) >= 5, f"{monitoring_files.ALERTS}: {len(alerts)} alerts")

    with tempfile.TemporaryDirectory(prefix="flightcache-dashboard-test.") as workdir:
        text = scrape(opts, workdir)
    if text is None:
        return report()
    series, families = exported(text)
    check(len(families) >= 30 and "flightcache_requests_total" in series
          and "flightcache_batch_keys_total" in series
          and "flightcache_origin_replica_fetches_total" in series
          and "flightcache_fleet_connected" in series,
          f"the scrape has the families of a server with replicas, fleet and batches "
          f"({len(families)} families, {len(series)} series names)")
    known = series | PROMETHEUS_NAMES

    # Self-test: a name the server does not export is found and reported.
    bogus = [("self-test", 'sum by (le) (rate(flightcache_bogus_total{job="$job"}[$__rate_interval]))')]
    check(unknown_names(bogus, known) == ({"self-test": ["flightcache_bogus_total"]}, []),
          "self-test: an expression naming flightcache_bogus_total is reported")

    for source, expressions in ((monitoring_files.DASHBOARD, dashboard),
                                (monitoring_files.ALERTS, alerts)):
        unknown, empty = unknown_names(expressions, known)
        for where, names in sorted(unknown.items()):
            fail(f"{source}: {where} queries {names}, which the server does not export "
                 f"(histograms are NAME_bucket/_sum/_count)")
        check(not empty, f"{source}: every expression selects a metric"
              + (f" (none in {empty})" if empty else ""))
        used = set().union(*(monitoring_files.metric_names(e) for _, e in expressions))
        if unknown:
            fail(f"{source}: {len(unknown)} expression(s) query names the server does not export")
        else:
            ok(f"{source}: all {len(used)} metric names are exported: " + ", ".join(sorted(used)))

    graphed = {family_of(n, families) for _, e in dashboard for n in monitoring_files.metric_names(e)}
    missing = sorted(f for f in families
                     if f.startswith("flightcache_") and f not in graphed and f not in NOT_GRAPHED)
    check(not missing, f"{monitoring_files.DASHBOARD} shows every flightcache_* family exported"
          + (f" (missing {missing})" if missing else ""))
    return report()


def report():
    return summary("every metric the dashboard and the alerts query is exported")


if __name__ == "__main__":
    sys.exit(main())
