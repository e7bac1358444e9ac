#!/usr/bin/env python3
"""Descriptor exhaustion against a flightcache-server it starts itself, with a given RLIMIT_NOFILE.

Starts SERVER on a free 127.0.0.1 port with the soft and hard open-file limits given, opens IDLE
TCP connections that never send a byte, then probes once a second for WATCH seconds whether the
server still accepts a new connection (an accepted gRPC connection gets the server's HTTP/2
SETTINGS frame at once; an unaccepted one sits in the kernel's backlog and gets nothing). The
idle connections are closed after HOLD seconds, so the probes show whether the listener comes
back. Prints the limit the server runs with (/proc/PID/limits), its descriptors at start and
after the flood, each probe, and how the process ended.

Python 3 standard library only; loopback only; every wait is bounded.

  python3 bench/descriptors.py --server build/release/server/flightcache-server \\
      --soft 256 --hard 4096 --idle 320
"""

import argparse
import os
import resource
import socket
import sys
import time

import local_server


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def soft_limit(pid):
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return line.split()[3]
    except OSError:
        pass
    return "?"


def accepted(port, timeout=2.0):
    """True if the server accepts a new connection: it sends its SETTINGS frame."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return len(s.recv(64)) > 0
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--soft", type=int, default=256)
    parser.add_argument("--hard", type=int, default=4096)
    parser.add_argument("--idle", type=int, default=320, help="idle connections to open")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold them open")
    parser.add_argument("--watch", type=float, default=20.0, help="seconds of probes")
    args = parser.parse_args()
    if not (1 <= args.soft <= args.hard <= 1 << 20 and 0 <= args.idle <= 60000):
        parser.error("want 1 <= soft <= hard <= 1048576 and 0 <= idle <= 60000")

    def limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.soft, args.hard))

    server = local_server.start(args.server, ["--drain-timeout=1s"], preexec_fn=limits)
    port, pid = server.port, server.pid
    idle = []
    try:
        print(f"limit soft={args.soft} hard={args.hard}; server runs with soft limit "
              f"{soft_limit(pid)}, {open_fds(pid)} descriptors open at start")
        for _ in range(args.idle):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        flooded = time.monotonic()
        time.sleep(0.5)
        print(f"{len(idle)} idle connections open; server holds {open_fds(pid)} descriptors")
        while time.monotonic() - flooded < args.watch:
            t = time.monotonic() - flooded
            if idle and t >= args.hold:
                for s in idle:
                    s.close()
                print(f"t={t:5.1f}s closed the {len(idle)} idle connections")
                idle = []
            if server.process.poll() is not None:
                print(f"t={t:5.1f}s server exited with status {server.process.returncode}")
                break
            ok = accepted(port)
            print(f"t={t:5.1f}s new connection {'accepted' if ok else 'NOT accepted'}; "
                  f"server holds {open_fds(pid)} descriptors", flush=True)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - flooded - t)))
        reaction = [line for line in server.log_text().splitlines() if "listener failed" in line]
        if reaction:
            print("server log:", reaction[0].strip()[:200])
    finally:
        for s in idle:
            s.close()
        print(f"server exit status {server.stop()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
