#!/usr/bin/env python3
"""Checks presenced under redis-benchmark (Debian's redis-tools, Redis 7).

Usage: redis_benchmark_check.py --port N [--host H] [--requests N]

Runs `redis-benchmark -n 200000 -P 16 -r 1000000 --csv MHEARTBEAT __rand_int__` (50 clients,
16 pipelined commands each, random user IDs) and checks that it finishes without an error, that
its CSV report covers the command, and that INFO's heartbeats_total grew by exactly the number
of requests: redis-benchmark 7 stops at the first error reply, and every request it counts
must have reached the store.

`__rand_int__` becomes a 12-digit zero-padded number (`000000421337`), which is not the
canonical spelling of an integer, so these users live in the side table, not in dense slots.

Meant for a server it has to itself: it compares INFO counters before and after. Uses only the
standard library. Prints one line per failed check and a summary line; exits 1 if any failed.
"""

import argparse
import csv
import io
import re
import shutil
import socket
import subprocess
import sys
import time


def info_presence(host, port):
    """INFO presence over a plain socket, as a dict of str values."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$8\r\npresence\r\n")
        data = b""
        while b"\r\n" not in data:
            data += sock.recv(65536)
        header, _, rest = data.partition(b"\r\n")
        if not header.startswith(b"$"):
            raise RuntimeError(f"INFO presence replied {data!r}")
        length = int(header[1:])
        while len(rest) < length + 2:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed during INFO")
            rest += chunk
    text = rest[:length].decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--redis-benchmark", default="redis-benchmark")
    args = parser.parse_args()

    binary = shutil.which(args.redis_benchmark)
    if binary is None:
        print(
            f"redis_benchmark_check: {args.redis_benchmark} not found; run scripts/install-test-deps",
            file=sys.stderr,
        )
        return 2
    pipeline = 16
    if args.requests % pipeline:
        # redis-benchmark issues whole pipelines, so it would send more than asked.
        print(f"redis_benchmark_check: --requests must be a multiple of {pipeline}", file=sys.stderr)
        return 2

    passed, failed = 0, []

    def check(name, ok, detail=""):
        nonlocal passed
        if ok:
            passed += 1
        else:
            failed.append(name)
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)

    before = int(info_presence(args.host, args.port)["heartbeats_total"])
    command = [
        binary,
        "-h",
        args.host,
        "-p",
        str(args.port),
        "-n",
        str(args.requests),
        "-P",
        str(pipeline),
        "-r",
        "1000000",
        "--csv",
        "MHEARTBEAT",
        "__rand_int__",
    ]
    print("$ redis-benchmark " + " ".join(command[1:]), flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        print("FAIL redis-benchmark did not finish within 300 s")
        print(f"redis_benchmark_check: {passed} checks passed, 1 failed")
        return 1
    elapsed = time.monotonic() - started
    print(done.stdout + done.stderr, end="", flush=True)
    check("redis-benchmark exits with status 0", done.returncode == 0, f"status {done.returncode}")
    error_lines = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if re.search(r"\bERR\b", line) or re.search(r"error", line, re.I)
    ]
    check("redis-benchmark prints no error", not error_lines, "\n".join(error_lines))

    rows = list(csv.reader(io.StringIO(done.stdout)))
    report = {row[0]: row for row in rows[1:] if row}
    check(
        "the CSV report has redis-benchmark 7's header",
        bool(rows) and rows[0][:2] == ["test", "rps"],
        repr(rows[:1]),
    )
    row = report.get("MHEARTBEAT __rand_int__")
    check("the CSV report has a row for the command", row is not None, repr(rows))
    rps = float(row[1]) if row else 0.0
    check("the reported requests per second are positive", rps > 0, repr(row))

    after = int(info_presence(args.host, args.port)["heartbeats_total"])
    check(
        f"INFO heartbeats_total grew by the {args.requests} requests",
        after - before == args.requests,
        f"{before} -> {after}, grew by {after - before}",
    )
    print(
        f"redis_benchmark_check: {passed} checks passed, {len(failed)} failed "
        f"({args.requests} requests in {elapsed:.2f} s, {rps:.0f} requests/s reported)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
