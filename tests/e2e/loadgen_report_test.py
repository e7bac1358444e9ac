#!/usr/bin/env python3
"""flightcache-loadgen's --report, --compare and --hdr-log against a real server.

Starts flightcache-origin and flightcache-server (hedging on) on free ports, runs the loadgen
open loop (--json, --report, --hdr-log) and closed loop (--json), compares the two, and checks:
  - the HTML pages are well-formed (the whole page parses as XML, every SVG too), have every
    section, show the run's real figures (from its --json), and fetch or run nothing;
  - they render in headless Chromium without console errors, and the screenshot has the plot
    colours (self-tests: a page with a console error and a blank page are caught);
  - the HDR log, decoded here from the format's description (not with the loadgen's code), has
    one histogram a second whose counts, max and start times are the loadgen's timeline, adding
    up to the run's calls;
  - --compare with a missing file, non-JSON, a JSON that is no loadgen report, another schema
    version, a run of zero calls or one file only exits 2 with one line naming the problem.

Usage: loadgen_report_test.py --server=BIN --origin=BIN --loadgen=BIN --chromium=BIN
"""

import argparse
import base64
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_report import check, fail, ok, summary  # noqa: E402  (beside this file)
from e2e_processes import Processes, run, wait_for  # noqa: E402  (beside this file)

SVG = "{http://www.w3.org/2000/svg}"
SECTIONS = ["latency", "throughput", "latency-over-time", "status", "savings", "configuration"]
BROWSER_WAIT = 90  # seconds for one headless Chromium run
# The plot colours (client/loadgen/svg_plot.h, html_report.cc): latency curve and p50 (blue),
# p99 (red), OK per second (green), the open loop's intended rate (orange).
PLOT_COLOURS = {"blue": (0x1f, 0x77, 0xb4), "red": (0xd6, 0x27, 0x28),
                "green": (0x2c, 0xa0, 0x2c), "orange": (0xff, 0x7f, 0x0e)}
MIN_COLOUR_PIXELS = 200  # more than the legend swatches alone: the lines are drawn


def fig(v):
    """A figure as the page prints it (four significant digits, C's %.4g)."""
    return "%.4g" % v


# ---------------------------------------------------------------- the page, parsed

def parse_page(path):
    """The page as an XML tree (it is written well-formed), or None and a failure."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    check(text.startswith("<!DOCTYPE html>"), f"{os.path.basename(path)} starts with <!DOCTYPE html>")
    try:
        return text, ET.fromstring(text[len("<!DOCTYPE html>"):])
    except ET.ParseError as e:
        fail(f"{os.path.basename(path)} does not parse: {e}")
        return text, None


def table_rows(section):
    """{row heading: [cell texts]} of every table in a section."""
    rows = {}
    for tr in section.iter("tr"):
        th = tr.find("th")
        if th is not None and th.text:
            rows[th.text] = ["".join(td.itertext()) for td in tr.findall("td")]
    return rows


def check_svgs(name, root, expected):
    svgs = root.findall(f".//{SVG}svg")
    check(len(svgs) == expected, f"{name}: {len(svgs)} inline SVG plots (expected {expected})")
    for svg in svgs:
        title = svg.find(f"{SVG}title")
        w, h = float(svg.get("width")), float(svg.get("height"))
        drawn = svg.findall(f"{SVG}polyline") + svg.findall(f"{SVG}circle")
        inside = True
        for line in svg.findall(f"{SVG}polyline"):
            for point in line.get("points").split():
                x, y = (float(v) for v in point.split(","))
                inside = inside and 0 <= x <= w and 0 <= y <= h
        check(title is not None and drawn and inside,
              f"{name}: SVG '{title.text if title is not None else '?'}' has a title and "
              f"{len(drawn)} series, every point inside its {w:g}x{h:g} box")


def check_self_contained(name, text):
    found = [p for p in ("<script", "src=", "href=", "url(", "@import", "@font-face")
             if p in text]
    check(not found, f"{name} runs and fetches nothing (no {found or 'script, src, href, url('})")


def check_run_page(path, a):
    text, root = parse_page(path)
    if root is None:
        return
    check_self_contained("run report", text)
    sections = {s.get("id"): s for s in root.iter("section")}
    check(list(sections) == SECTIONS, f"run report sections {list(sections)}")
    check_svgs("run report", root, 4)
    if list(sections) != SECTIONS:
        return
    lat, thr = table_rows(sections["latency"]), table_rows(sections["throughput"])
    status, sav = table_rows(sections["status"]), table_rows(sections["savings"])
    conf = table_rows(sections["configuration"])
    expect = {
        ("latency", "p50"): (lat, [fig(a["latency_ms"]["p50"]) + " ms"]),
        ("latency", "p99"): (lat, [fig(a["latency_ms"]["p99"]) + " ms"]),
        ("latency", "p99.9"): (lat, [fig(a["latency_ms"]["p99.9"]) + " ms"]),
        ("latency", "max"): (lat, [fig(a["latency_ms"]["max"]) + " ms"]),
        ("throughput", "calls"): (thr, [fig(a["requests"])]),
        ("throughput", "achieved rate"): (thr, [fig(a["throughput_rps"]) + " calls/s"]),
        ("throughput", "intended rate"): (thr, [fig(a["intended_rate_rps"]) + " calls/s"]),
        ("status", "OK"): (status, [fig(a["status_codes"]["OK"])]),
        ("savings", "hit ratio"): (sav, [fig(a["server"]["hit_ratio"])]),
        ("savings", "coalescing ratio"): (sav, [fig(a["server"]["coalescing_ratio"])]),
        ("savings", "origin fetches per request"):
            (sav, [fig(a["server"]["origin_fetches_per_request"])]),
        ("savings", "hedges sent"): (sav, [fig(a["server"]["hedges_sent"])]),
        ("savings", "hedges won"): (sav, [fig(a["server"]["hedges_won"])]),
        ("savings", "stale served"): (sav, [fig(a["server"]["stale_served"])]),
        ("configuration", "--rate"): (conf, ["300"]),
        ("configuration", "target"): (conf, [a["target"]]),
    }
    for (section, row), (rows, cells) in expect.items():
        check(rows.get(row) == cells,
              f"run report {section}: {row} = {rows.get(row)} (the JSON says {cells})")
    svg_text = ET.tostring(sections["throughput"], encoding="unicode")
    check(">intended</" in svg_text, "run report: the throughput plot has the intended-rate line")


def check_compare_page(path, a, b):
    text, root = parse_page(path)
    if root is None:
        return
    check_self_contained("comparison", text)
    sections = [s.get("id") for s in root.iter("section")]
    check(sections == ["ratios"] + SECTIONS, f"comparison sections {sections}")
    check_svgs("comparison", root, 4)
    ratios = table_rows(next(s for s in root.iter("section") if s.get("id") == "ratios"))
    for name, va, vb, unit in (
            ("throughput", a["throughput_rps"], b["throughput_rps"], " calls/s"),
            ("p99", a["latency_ms"]["p99"], b["latency_ms"]["p99"], " ms"),
            ("hit ratio", a["server"]["hit_ratio"], b["server"]["hit_ratio"], "")):
        want = [fig(va) + unit, fig(vb) + unit, "%.3f" % (vb / va) if va else "n/a"]
        got = ratios.get(name)
        # The ratio is computed from the JSON's doubles: allow one unit in the last digit.
        close = got is not None and got[:2] == want[:2] and (
            got[2] == want[2] or abs(float(got[2]) - float(want[2])) <= 0.0011)
        check(close, f"comparison ratios: {name} = {got} (expected {want})")


# ---------------------------------------------------------------- the browser

def png_pixels(path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB/RGBA non-interlaced PNG."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, width = 8, b"", None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunk = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0, "unsupported PNG"
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        at += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xff
            elif kind == 2:
                line[i] = (line[i] + up) & 0xff
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xff
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xff
        rows.append(line)
        prev = line
    return width, height, [[tuple(r[x * channels:x * channels + 3]) for x in range(width)] for r in rows]


def colour_counts(png):
    """{colour name: pixels of exactly that colour}, and the share of non-white pixels."""
    _, _, rows = png_pixels(png)
    wanted = {rgb: name for name, rgb in PLOT_COLOURS.items()}
    counts = {name: 0 for name in PLOT_COLOURS}
    non_white = total = 0
    for row in rows:
        for px in row:
            total += 1
            non_white += px != (255, 255, 255)
            if px in wanted:
                counts[wanted[px]] += 1
    return counts, non_white / max(1, total)


def browse(chromium, page, workdir, name):
    """Renders `page` headless: (console error lines, screenshot path), or None on failure."""
    png = os.path.join(workdir, f"{name}.png")
    argv = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
            "--enable-logging=stderr", "--v=0", f"--user-data-dir={workdir}/chromium-{name}",
            f"--screenshot={png}", "--window-size=1200,3000", "file://" + os.path.abspath(page)]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=BROWSER_WAIT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail(f"chromium: no screenshot of {name} within {BROWSER_WAIT} s")
        return None
    if not check(r.returncode == 0 and os.path.exists(png),
                 f"chromium renders {name} (exit {r.returncode})"
                 + ("" if r.returncode == 0 else f": {r.stderr[-1500:]}")):
        return None
    # Chromium logs every console message and uncaught exception as a CONSOLE line.
    console = [line for line in r.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line]
    return console, png


def check_rendering(chromium, workdir, pages):
    # Self-tests first: the checks must catch a console error and a page with nothing drawn.
    bad = os.path.join(workdir, "console-error.html")
    with open(bad, "w") as f:
        f.write("<!DOCTYPE html><html><body><script>console.error('broken page')</script>"
                "</body></html>")
    seen = browse(chromium, bad, workdir, "console-error")
    if seen is not None:
        check(any("broken page" in line for line in seen[0]),
              "self-test: a page's console error shows in Chromium's log")
        counts, _ = colour_counts(seen[1])
        check(all(n < MIN_COLOUR_PIXELS for n in counts.values()),
              f"self-test: a page without plots has no plot colours ({counts})")
    for name, page, colours in pages:
        seen = browse(chromium, page, workdir, name)
        if seen is None:
            continue
        console, png = seen
        check(not console, f"{name}: no console errors in Chromium" + (f": {console}" if console else ""))
        try:
            counts, inked = colour_counts(png)
        except (AssertionError, zlib.error, struct.error) as e:
            fail(f"{name}: screenshot unreadable: {e}")
            continue
        check(all(counts[c] >= MIN_COLOUR_PIXELS for c in colours) and 0.005 < inked < 0.6,
              f"{name}: the screenshot shows the plots: {counts} pixels of the plot colours "
              f"(need {MIN_COLOUR_PIXELS} of each of {colours}), {inked:.1%} not white")


# ---------------------------------------------------------------- the HDR log

def zigzag_counts(payload):
    """HdrHistogram's V2 counts: ZigZag LEB128-64b9B, a negative value is a run of zeros."""
    counts, at = [], 0
    while at < len(payload):
        raw = shift = 0
        for byte in range(9):
            b = payload[at]
            at += 1
            if byte == 8:
                raw |= b << shift
                break
            raw |= (b & 0x7f) << shift
            shift += 7
            if not b & 0x80:
                break
        value = (raw >> 1) ^ -(raw & 1)
        counts.extend([0] * -value if value < 0 else [value])
    return counts


def bucket_range(index):
    """The values counted at `index` for lowestDiscernibleValue 1, two significant digits."""
    bucket, sub = (index >> 7) - 1, (index & 127) + 128
    if bucket < 0:
        return index, index
    return sub << bucket, ((sub + 1) << bucket) - 1


def decode_histogram(b64):
    blob = base64.b64decode(b64)
    cookie, length = struct.unpack(">iI", blob[:8])
    assert cookie & ~0xf0 == 0x1c849304, f"compressed cookie {cookie:#x}"
    v2 = zlib.decompress(blob[8:8 + length])
    cookie, payload_len, offset, digits, lowest, highest, ratio = struct.unpack(">iiiiqqd", v2[:40])
    assert cookie & ~0xf0 == 0x1c849303, f"V2 cookie {cookie:#x}"
    assert (payload_len, offset, digits, lowest, ratio) == (len(v2) - 40, 0, 2, 1, 1.0), \
        f"header {payload_len, offset, digits, lowest, ratio}"
    assert highest >= 2, f"highestTrackableValue {highest}"
    return zigzag_counts(v2[40:])


def check_hdr_log(path, a):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = [line for line in lines if line.startswith("#") or line.startswith('"')]
    check(header[1:2] == ["#[Histogram log format version 1.3]"]
          and re.fullmatch(r"#\[StartTime: \d+\.\d{3} \(seconds since epoch\), .+\]", header[2])
          and header[-1] == '"StartTimestamp","Interval_Length","Interval_Max",'
                            '"Interval_Compressed_Histogram"',
          f"HDR log header as HistogramLogWriter writes it: {header}")
    intervals = [line.split(",") for line in lines if line not in header]
    timeline = a["timeline"]
    check(len(intervals) == len(timeline) and len(intervals) >= 3,
          f"HDR log: {len(intervals)} intervals, the JSON timeline {len(timeline)}")
    total = 0
    for i, (fields, second) in enumerate(zip(intervals, timeline)):
        try:
            counts = decode_histogram(fields[3])
        except (AssertionError, ValueError, zlib.error, struct.error) as e:
            fail(f"HDR log interval {i}: does not decode: {e}")
            continue
        n = sum(counts)
        total += n
        top = max((j for j, c in enumerate(counts) if c), default=0)
        low, high = bucket_range(top)
        max_ns = second["max_ms"] * 1e6
        check(n == second["calls"] and abs(float(fields[0]) - second["start_s"]) < 0.0011
              and abs(float(fields[2]) - second["max_ms"]) < 0.0011
              and low <= max_ns * (1 + 1e-6) and max_ns <= high * (1 + 1e-6) + 1,
              f"HDR log interval {i}: start {fields[0]} s, {n} values, max {fields[2]} ms in "
              f"bucket [{low}, {high}] ns; the loadgen saw {second['calls']} calls, max "
              f"{second['max_ms']} ms")
    check(total == a["requests"], f"HDR log: {total} values in all, the run's calls {a['requests']}")


# ---------------------------------------------------------------- --compare's errors

def check_compare_errors(loadgen, workdir, a_path):
    with open(a_path, encoding="utf-8") as f:
        a_text = f.read()

    def write(name, text):
        path = os.path.join(workdir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    cases = [
        ("a missing file", [os.path.join(workdir, "missing.json")], "missing.json"),
        ("a file that is not JSON", [write("text.json", "requests: 12\n")],
         "not a flightcache-loadgen JSON report"),
        ("JSON that is no loadgen report", [write("other.json", '{"requests": 12}')],
         "not a flightcache-loadgen JSON report"),
        ("another schema version",
         [write("v1.json", a_text.replace('"schema_version":2', '"schema_version":1'))],
         "schema version 1"),
        ("a run with zero calls",
         [write("zero.json", re.sub(r'"requests":\d+', '"requests":0', a_text, count=1))],
         "the run has no calls"),
    ]
    for what, files, words in cases:
        argv = [loadgen, "--compare", a_path] + files
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            fail(f"--compare with {what}: no exit within 30 s")
            continue
        err = r.stderr.strip()
        check(r.returncode == 2 and "\n" not in err and words in err,
              f"--compare with {what}: exit {r.returncode} (expected 2), one line naming it: {err!r}")
    r = subprocess.run([loadgen, "--compare", a_path], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    check(r.returncode == 2 and "two JSON reports" in r.stderr,
          f"--compare with one file: exit {r.returncode}, {r.stderr.strip()!r}")


# ---------------------------------------------------------------- main

def start_server(opts, procs, workdir):
    port_file = os.path.join(workdir, "origin.port")
    proc, log = procs.start("origin", [opts.origin, "--listen=127.0.0.1:0",
                                       f"--port-file={port_file}", "--latency=fixed:2ms",
                                       "--log-interval=0", "--drain-timeout=1s"])
    port = wait_for("the origin writes its port", proc, log, lambda _: (
        open(port_file).read().strip() or None) if os.path.exists(port_file) else None)
    if port is None:
        return None
    server, log = procs.start("server", [
        opts.server, "--listen=127.0.0.1:0", "--metrics-listen=127.0.0.1:0",
        f"--origin=grpc://127.0.0.1:{int(port)}", "--hedge-delay=1ms", "--drain-timeout=2s"])
    m = wait_for("the server logs its port", server, log,
                 lambda text: re.search(r"listening on \S+ \(port (\d+)\)", text))
    return None if m is None else f"--target=127.0.0.1:{m.group(1)}"


def main():
    ap = argparse.ArgumentParser()
    for flag in ("server", "origin", "loadgen", "chromium"):
        ap.add_argument(f"--{flag}", required=True)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="flightcache-report-test.") as workdir:
        files = {n: os.path.join(workdir, n) for n in ("a.json", "b.json", "a.html", "a.hlog",
                                                       "c.html")}
        procs = Processes(workdir)
        try:
            target = start_server(opts, procs, workdir)
            if target is None:
                return summary("")
            common = [opts.loadgen, target, "--keys=400", "--distribution=zipf:1.1",
                      "--deadline=5s", "--progress=off"]
            ran = run(common + ["--rate=300", "--duration=3500ms", f"--json={files['a.json']}",
                                f"--report={files['a.html']}", f"--hdr-log={files['a.hlog']}"],
                      "flightcache-loadgen: open loop with --json, --report and --hdr-log")
            ran = ran and run(common + ["--concurrency=4", "--requests=900",
                                        f"--json={files['b.json']}"],
                              "flightcache-loadgen: closed loop with --json")
        finally:
            procs.stop_all()
        if not ran:
            return summary("")
        cmp = run([opts.loadgen, "--compare", files["a.json"], files["b.json"],
                   f"--report={files['c.html']}"], "flightcache-loadgen --compare a.json b.json")
        if cmp is not None:
            check("B/A" in cmp.stdout and "throughput" in cmp.stdout,
                  "--compare prints the ratio table")
        with open(files["a.json"]) as f:
            a = json.load(f)
        with open(files["b.json"]) as f:
            b = json.load(f)
        ok(f"run A: {a['requests']} calls, {len(a['timeline'])} seconds; run B: {b['requests']} "
           f"calls; report {os.path.getsize(files['a.html'])} bytes, comparison "
           f"{os.path.getsize(files['c.html'])} bytes")
        check_run_page(files["a.html"], a)
        if os.path.exists(files["c.html"]):
            check_compare_page(files["c.html"], a, b)
        check_hdr_log(files["a.hlog"], a)
        check_compare_errors(opts.loadgen, workdir, files["a.json"])
        check_rendering(opts.chromium, workdir, [
            ("run report", files["a.html"], ["blue", "red", "green", "orange"]),
            ("comparison", files["c.html"], ["blue", "red", "green"])])
    return summary("the loadgen's report, comparison and HDR log are what the run measured")


if __name__ == "__main__":
    sys.exit(main())
