#!/usr/bin/env python3
"""Lines up the server's timer-thread lateness with the cancellations it delayed, in time.

bench/e2e/cancellation.sh runs it when TIMER_SAMPLE_MS is set:
  sample PORT OUT INTERVAL_MS   scrape http://127.0.0.1:PORT/metrics every INTERVAL_MS until
                                SIGTERM; one line per scrape: wall-clock ns, then the cumulative
                                count of timers late by more than each of THRESHOLDS_S, then the
                                count of callbacks longer than each.
  compare WORK NAME             NAME.calls / NAME.records (flightcache-bench-cancel) and
                                NAME.timer_samples: for each slow cancellation (origin saw
                                CANCELLED more than 5 ms after the deadline), whether the timer
                                thread ran some timer more than 2 ms late between the deadline
                                and the cancellation (plus one sampling interval), against how
                                often that happens in any window of that length (the base rate).
"""
import re
import signal
import sys
import time
import urllib.request

THRESHOLDS_S = (0.002, 0.005, 0.01, 0.02, 0.05)
SLOW_CANCEL_MS = 5.0
LATE_TIMER_INDEX = 0  # > 2 ms


def over(text, metric):
    buckets = {float(le): float(v) for le, v in
               re.findall(metric + r'_bucket\{le="([^"+]+)"\} (\S+)', text)}
    total = float(re.search(metric + r"_count (\S+)", text).group(1))
    return [int(total - buckets[t]) for t in THRESHOLDS_S]


def sample(port, out, interval_ms):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    url = f"http://127.0.0.1:{port}/metrics"
    with open(out, "w", buffering=1) as f:
        while True:
            before = time.time_ns()
            try:
                text = urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError:
                time.sleep(interval_ms / 1000)
                continue
            when = (before + time.time_ns()) // 2
            late = over(text, "flightcache_timer_lateness_seconds")
            long = over(text, "flightcache_timer_callback_seconds")
            f.write(" ".join(str(v) for v in [when] + late + long) + "\n")
            time.sleep(interval_ms / 1000)


def compare(work, name):
    deadlines, client_late_ms = {}, {}
    for line in open(f"{work}/{name}.calls"):
        p = line.split()
        if p[0].startswith("cancel-"):
            deadlines[p[0]] = int(p[1])
            client_late_ms[int(p[1])] = (int(p[3]) - int(p[1])) / 1e6
    cancels = []  # (deadline ns, latency ms)
    for line in open(f"{work}/{name}.records"):
        p = line.split()
        if len(p) == 4 and p[0] in deadlines:
            cancels.append((deadlines[p[0]], (int(p[2]) - deadlines[p[0]]) / 1e6))
    cancels.sort()
    samples = [[int(v) for v in line.split()] for line in open(f"{work}/{name}.timer_samples")]
    if len(samples) < 2 or not cancels:
        print(f"{name}: too few samples ({len(samples)}) or cancellations ({len(cancels)})")
        return
    interval_ns = (samples[-1][0] - samples[0][0]) // (len(samples) - 1)
    # Only the measured loads' span (the warm-up's timers are left out).
    start = min(d for d, _ in cancels) - 2 * interval_ns
    end = max(d + int(ms * 1e6) for d, ms in cancels) + 2 * interval_ns
    samples = [s for s in samples if start <= s[0] <= end] or samples

    def late_between(start, end, column=1 + LATE_TIMER_INDEX):
        # Timers counted late in (start, end]: the last sample at or before start to the first
        # at or after end.
        first = max((s for s in samples if s[0] <= start), default=samples[0], key=lambda s: s[0])
        last = min((s for s in samples if s[0] >= end), default=samples[-1], key=lambda s: s[0])
        return last[column] - first[column]

    slow = [(d, ms) for d, ms in cancels if ms > SLOW_CANCEL_MS]
    with_late = [(d, ms) for d, ms in slow if late_between(d, d + int(ms * 1e6) + interval_ns) > 0]
    # Base rate: every cancellation's deadline, with the mean slow window length.
    span = int(sum(ms for _, ms in slow) / len(slow) * 1e6) if slow else 0
    base = sum(1 for d, _ in cancels if late_between(d, d + span + interval_ns) > 0)
    late = [samples[-1][1 + i] - samples[0][1 + i] for i in range(len(THRESHOLDS_S))]
    long = [samples[-1][1 + len(THRESHOLDS_S) + i] - samples[0][1 + len(THRESHOLDS_S) + i]
            for i in range(len(THRESHOLDS_S))]
    ms = sorted(m for _, m in cancels)
    labels = [f">{t * 1000:g}ms" for t in THRESHOLDS_S]
    print(f"{name}: {len(samples)} scrapes every {interval_ns / 1e6:.1f} ms over the run")
    print("  cancellations " + " ".join(
        f"{lab}={sum(1 for m in ms if m > t * 1000)}" for lab, t in zip(labels, THRESHOLDS_S))
        + f" max={ms[-1]:.1f}ms (n={len(ms)})")
    print("  timers late   " + " ".join(f"{lab}={v}" for lab, v in zip(labels, late)))
    print("  callbacks     " + " ".join(f"{lab}={v}" for lab, v in zip(labels, long)))
    print(f"  slow cancellations (> {SLOW_CANCEL_MS:g} ms): {len(slow)}, of which {len(with_late)}"
          f" had a timer > 2 ms late between their deadline and their cancellation;"
          f" base rate over all {len(cancels)} deadlines: {base}")
    # Episodes: slow cancellations whose deadlines are within 10 ms of each other.
    episodes = []
    for d, m in slow:
        if episodes and d - episodes[-1][-1][0] <= 10_000_000:
            episodes[-1].append((d, m))
        else:
            episodes.append([(d, m)])
    print("  episodes (start after the first deadline, loads, worst cancel, worst client"
          " DEADLINE_EXCEEDED lateness; timers late, callbacks long by " + "/".join(labels)
          + " in the window):")
    for e in episodes:
        first, last = e[0][0], e[-1][0]
        worst = max(m for _, m in e)
        client = max(client_late_ms.get(d, 0.0) for d, _ in e)
        end = last + int(worst * 1e6) + interval_ns
        counts = [late_between(first, end, 1 + i) for i in range(len(THRESHOLDS_S))]
        longs = [late_between(first, end, 1 + len(THRESHOLDS_S) + i)
                 for i in range(len(THRESHOLDS_S))]
        print(f"    +{(first - cancels[0][0]) / 1e6:7.1f} ms  {len(e):3d} loads  {worst:6.1f} ms"
              f"  client {client:6.1f} ms  timers {'/'.join(str(c) for c in counts)}"
              f"  callbacks {'/'.join(str(c) for c in longs)}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "sample":
        sample(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
