#!/usr/bin/env python3
"""Bytes per waiting call, by what holds them, from two gperftools heap profiles.

Input: `google-pprof --text --stacks --inuse_space --base=IDLE.heap BINARY WAITING.heap` on stdin
(the heap in use with N calls waiting, minus the heap in use idle). Output: one row per kind of
allocation, bytes per waiting call (bytes / N), whose it is (gRPC's or ours), and the innermost
frames of the largest stack in that row. bench/e2e/waiters.sh runs this with WAITERS_HEAP_PROFILE=1.

Debian's gRPC has no debug symbols, so its frames are the nearest exported symbol (e.g. the
C++ server's per-call allocation shows as grpc::Server::Ref); the rules below name them by the
C-core function that calls them, which is exact.

Usage: heap_breakdown.py N < stacks.txt
"""

import collections
import re
import sys

# (label, owner, regex over the joined innermost frames). First match wins.
RULES = [
    ("gRPC call arena: call object, filter stack, HTTP/2 stream, metadata", "gRPC",
     r"Arena::(CreateWithAlloc|AllocZone)"),
    ("gRPC C++ per-call request and CallbackServerContext", "gRPC", r"MatchOrQueue"),
    ("gRPC received metadata array", "gRPC", r"PublishAppMetadata"),
    ("gRPC request bytes (kept by a raw ByteBuffer method)", "gRPC",
     r"grpc_raw_compressed_byte_buffer_create"),
    ("gRPC HTTP/2 stream map", "gRPC", r"grpc_chttp2_stream_map_add"),
    ("typed messages' strings (request key, response value)", "gRPC",
     r"ArenaStringPtr|_InternalParse"),
    ("reactor (GetReactor: the call's state, response)", "ours",
     r"^[^<]*CacheService::Get\b"),
    ("flight subscriber table (per flight, grows with its waiters)", "ours",
     r"prepare_insert < flightcache::FlightCache::Get|FlightState.*Subscribe"),
    ("flight callbacks (the waiter's callback wrappers)", "ours",
     r"^[^<]*flightcache::FlightCache::Get\b"),
    ("deadline timer (TimerQueue entry, its table, its callback)", "ours",
     r"TimerQueue::RunAt|^Arm\b|CallWait::Arm"),
    ("wait state (CallWait, its handles)", "ours", r"GetReactor::Start"),
    ("hold mode's wave list (noop server)", "ours", r"HeldCalls"),
]


def frames(block):
    """The function names of one stack, innermost first."""
    return [re.sub(r"^\s*(-?\d+\s+)?\(\w+\)\s+.*?:(\?|\d+):", "", line).strip()
            for line in block.splitlines()]


def main():
    n = int(sys.argv[1])
    text = sys.stdin.read()
    if "Stacks:" not in text:
        sys.exit("heap_breakdown: no 'Stacks:' section in the input (google-pprof --text --stacks)")
    rows = collections.defaultdict(lambda: [0, None, 0])  # label -> [bytes, biggest stack, its bytes]
    for block in text.split("Stacks:", 1)[1].strip().split("\n\n"):
        m = re.match(r"\s*(-?\d+)\s+\(", block)
        if not m:
            continue
        size = int(m.group(1))
        fs = frames(block)
        inner = " < ".join(fs[:4])
        label, owner = "other", "?"
        for rule_label, rule_owner, pattern in RULES:
            if re.search(pattern, inner):
                label, owner = rule_label, rule_owner
                break
        if label == "other":
            owner = "ours" if any("flightcache::" in f for f in fs[:3]) else "gRPC"
            label = f"other ({owner})"
        row = rows[(owner, label)]
        row[0] += size
        if size > row[2]:
            row[1], row[2] = inner, size
    total = sum(r[0] for r in rows.values())
    print(f"| whose | what | bytes per waiting call | largest site (innermost frames) |")
    print(f"|---|---|---:|---|")
    for (owner, label), (size, site, _) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        if abs(size) / n < 4:
            continue
        print(f"| {owner} | {label} | {size / n:.0f} | `{site}` |")
    for who in ("gRPC", "ours"):
        part = sum(r[0] for (o, _), r in rows.items() if o == who)
        print(f"| {who} | total | {part / n:.0f} | |")
    print(f"| all | total ({n} waiting calls) | {total / n:.0f} | |")


if __name__ == "__main__":
    main()
