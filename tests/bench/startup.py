#!/usr/bin/env python3
"""Start-up time of a chronicler whose exactly-once table holds many clients.

Usage:
  cargo build --release -p nodb
  python3 tests/bench/startup.py --clients 1000000 target/release/nodb [OTHER_NODB ...]

Writes one log with --clients actions, each from a different client (posted
in batches over HTTP to the first binary), then starts each binary on a copy
of that log --rounds times, alternating, and prints the median time from
exec to the "listening" line, and the resident memory after start. Several
binaries side by side give ratios in one run (this machine is shared and
noisy); the times are reported, never asserted.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def start(nodb, data):
    """Starts a chronicler on `data`; returns (process, url, seconds to ready)."""
    t = time.monotonic()
    p = subprocess.Popen(
        [nodb, "chronicler", "--data", data, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    for line in p.stdout:
        m = re.search(r"listening on (?:http://)?(127\.0\.0\.1:\d+)", line)
        if m:
            return p, "http://" + m.group(1), time.monotonic() - t
    raise SystemExit(f"{nodb} exited before listening (code {p.wait()})")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("nodb", nargs="+", help="nodb binaries to compare")
    ap.add_argument("--clients", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=".")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = os.path.join(tmp, "base")
        p, url, _ = start(args.nodb[0], base)
        t = time.monotonic()
        for start_n in range(0, args.clients, args.batch):
            body = json.dumps(
                [{"id": f"c{n}:1", "type": "t/x", "payload": n} for n in range(start_n, min(args.clients, start_n + args.batch))]
            ).encode()
            req = urllib.request.Request(url + "/actions", body, {"content-type": "application/json"})
            with urllib.request.urlopen(req) as r:
                assert r.status == 200
        print(f"wrote {args.clients} clients in {time.monotonic() - t:.1f} s")
        stop(p)
        times = {b: [] for b in args.nodb}
        rss = {b: [] for b in args.nodb}
        for _ in range(args.rounds):
            for b in args.nodb:
                data = os.path.join(tmp, "copy")
                shutil.rmtree(data, ignore_errors=True)
                shutil.copytree(base, data)
                p, _, took = start(b, data)
                times[b].append(took)
                rss[b].append(rss_mib(p.pid))
                stop(p)
        first = statistics.median(times[args.nodb[0]])
        for b in args.nodb:
            med = statistics.median(times[b])
            print(f"{b}: start {med:.2f} s (median of {args.rounds}, {med / first:.2f}x the first), RSS {statistics.median(rss[b]):.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
