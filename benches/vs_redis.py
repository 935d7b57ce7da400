"""presenced vs redis-server, measured in the same run on the same machine with the same client.

Each scenario starts fresh servers (both pinned to core 0: Redis is single-threaded, so
presenced gets the same single core and --threads 1), drives them with benches/loadgen pinned
to core 1, and prints one table: scenario, Redis figure, presenced figure, ratio. With
--quick the sizes are small enough for CI; the script then only fails if a server errors or an
expiry event is missing (it never judges speed). Without --quick it runs the full sizes that
docs/BENCHMARKS.md records.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESENCED = os.path.join(ROOT, "target", "release", "presenced")
LOADGEN = os.path.join(ROOT, "target", "release", "loadgen")
FANOUT_STORM = os.path.join(ROOT, "target", "release", "fanout_storm")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Server:
    def __init__(self, kind, extra=(), cores="0"):
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"vs-redis-{kind}-")
        if kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no",
                   "--dir", self.dir, "--loglevel", "warning"]
        else:
            cmd = [PRESENCED, "--port", str(self.port), "--threads", "1", "--shards", "1",
                   "--snapshot-interval", "0", "--dir", self.dir, "--log-level", "warn", *extra]
        self.proc = subprocess.Popen(["taskset", "-c", cores, *cmd], stdout=subprocess.DEVNULL)
        wait_port(self.port)
        time.sleep(0.2)
        self.baseline_rss = rss_bytes(self.proc.pid)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(["rm", "-rf", self.dir])


def loadgen(server, scenario, *args):
    cmd = ["taskset", "-c", "1", LOADGEN, "--target", "redis" if server.kind == "redis" else "presenced",
           "--port", str(server.port), "--server-pid", str(server.pid), "--scenario", scenario,
           "--json", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {scenario} against {server.kind} failed: {out.stdout} {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Table:
    def __init__(self):
        self.rows = []

    def add(self, scenario, measure, redis, presenced, better="higher", fmt="{:,.0f}"):
        if redis and presenced:
            ratio = presenced / redis if better == "higher" else redis / presenced
        else:
            ratio = None
        self.rows.append((scenario, measure, fmt.format(redis) if redis is not None else "-",
                          fmt.format(presenced) if presenced is not None else "-",
                          f"{ratio:.2f}x" if ratio else "-"))
        print(f"  {scenario:16} {measure:44} redis {self.rows[-1][2]:>14}  presenced {self.rows[-1][3]:>14}  {self.rows[-1][4]}", flush=True)

    def markdown(self):
        lines = ["| scenario | measure | Redis | presenced | presenced advantage |", "|---|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in self.rows]
        return "\n".join(lines)


def throughput(table, users, secs):
    for scenario, batch in (("heartbeat", 1), ("batch-heartbeat", 100), ("lookup", 100), ("dropin", 100)):
        results = {}
        for kind in ("redis", "presenced"):
            server = Server(kind, extra=["--ttl", "3600"])
            try:
                if scenario == "lookup":
                    loadgen(server, "populate", "--users", users, "--ttl-s", 3600)
                results[kind] = loadgen(server, scenario, "--users", users, "--duration-s", secs,
                                        "--batch", batch, "--ttl-s", 3600)
                if not server.alive():
                    raise RuntimeError(f"{kind} died during {scenario}")
            finally:
                server.stop()
        r, p = results["redis"], results["presenced"]
        unit = "users" if batch > 1 and scenario != "dropin" else "ops"
        key = "users_per_s" if unit == "users" else "ops_per_s"
        table.add(scenario, f"{unit}/s", r[key], p[key])
        cpu_key = "server_cpu_us_per_user" if unit == "users" else "server_cpu_us_per_op"
        table.add(scenario, f"server CPU µs per {unit[:-1]}", r.get(cpu_key), p.get(cpu_key),
                  better="lower", fmt="{:.3f}")
        table.add(scenario, "p99 latency µs (pipelined)", r.get("p99_us"), p.get("p99_us"),
                  better="lower", fmt="{:,.0f}")


def send_all(sock, commands):
    """Pipelines `commands` (bytes) and reads one simple reply per command."""
    sock.sendall(commands)


def expiry_storm(table, users, wait_s):
    results = {}
    for kind in ("redis", "presenced"):
        server = Server(kind)
        try:
            results[kind] = storm_one(server, users, wait_s)
            if not server.alive():
                raise RuntimeError(f"{kind} died during the expiry storm")
        finally:
            server.stop()
    for kind in ("redis", "presenced"):
        r = results[kind]
        print(f"  expiry-storm {kind}: delivered {r['delivered']}/{users}, lag p50 {r['p50']} ms, "
              f"p99 {r['p99']} ms, max {r['max']} ms", flush=True)
    r, p = results["redis"], results["presenced"]
    table.add("expiry-storm", f"events delivered (of {users:,}, within {wait_s} s)", r["delivered"], p["delivered"])
    table.add("expiry-storm", "lag p50 ms (deadline → subscriber)", r["p50"], p["p50"], better="lower")
    table.add("expiry-storm", "lag p99 ms", r["p99"], p["p99"], better="lower")
    table.add("expiry-storm", "lag max ms", r["max"], p["max"], better="lower")
    return results


def storm_one(server, users, wait_s):
    """`users` keys that all expire at the same instant D; lag = arrival - D per event."""
    cmd = socket.create_connection(("127.0.0.1", server.port))
    deadline_ms = int(time.time() * 1000) + 8000 + users // 200
    parts = []
    for i in range(users):
        key = f"user:{i}:presence".encode()
        parts.append(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$6\r\nonline\r\n$4\r\nPXAT\r\n$13\r\n%d\r\n"
                     % (len(key), key, deadline_ms))
    payload = b"".join(parts)
    # Replies are read while the commands are still being sent: a client that sends a whole
    # pipeline before reading any reply can deadlock against a server that stops reading while
    # its replies are not being read.
    received = []

    def read_replies():
        got = 0
        while got < users * 5:
            chunk = cmd.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        received.append(got)
    import threading
    reader = threading.Thread(target=read_replies)
    reader.start()
    cmd.sendall(payload)
    reader.join()
    if not received or received[0] < users * 5:
        raise RuntimeError("connection closed while populating")
    if int(time.time() * 1000) > deadline_ms - 1000:
        raise RuntimeError("populating took longer than the storm's lead time")
    sub = socket.create_connection(("127.0.0.1", server.port))
    if server.kind == "redis":
        cmd.sendall(b"CONFIG SET notify-keyspace-events Ex\r\n")
        cmd.recv(100)
        sub.sendall(b"PSUBSCRIBE __keyevent@0__:expired\r\n")
    else:
        sub.sendall(b"PSUBSCRIBE presence:*\r\n")
    sub.recv(1000)
    marker = b"$8\r\npmessage\r\n"
    counts = []
    tail = b""
    seen = 0
    stop_at = deadline_ms / 1000 + wait_s
    sub.settimeout(0.5)
    while seen < users and time.time() < stop_at:
        try:
            chunk = sub.recv(1 << 20)
        except socket.timeout:
            continue
        if not chunk:
            break
        now_ms = int(time.time() * 1000)
        data = tail + chunk
        n = data.count(marker)
        tail = data[-(len(marker) - 1):]
        if n:
            counts.append((now_ms - deadline_ms, n))
            seen += n
    sub.close()
    cmd.close()
    lags = sorted(counts)

    def pct(q):
        if not seen:
            return None
        rank = max(1, int(round(q * seen)))
        acc = 0
        for lag, n in lags:
            acc += n
            if acc >= rank:
                return max(lag, 0)
        return max(lags[-1][0], 0)

    return {"delivered": seen, "p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)}


def memory(table, sizes, presenced_only_sizes):
    for n in sizes + presenced_only_sizes:
        row = {}
        for kind in ("redis", "presenced"):
            if kind == "redis" and n in presenced_only_sizes:
                row[kind] = None
                continue
            # Users stay online (and Redis keys alive) while the store fills, except in the
            # presenced-only billion-user run, which measures tracked users: there a 1 s TTL
            # lets the timing wheel empty as it goes, as it would for users seen over a day.
            ttl = "1" if n in presenced_only_sizes else "86400"
            extra = ["--ttl", ttl, "--capacity", str(max(n, 1 << 20))]
            server = Server(kind, extra=extra)
            try:
                start = time.time()
                loadgen(server, "populate", "--users", n, "--batch", 1000 if kind == "presenced" else 100,
                        "--ttl-s", 86400, "--pipeline", 16)
                grown = rss_bytes(server.pid) - server.baseline_rss
                row[kind] = grown / n
                print(f"  memory {kind} {n:,} users: {grown / 2**20:,.0f} MiB over baseline, "
                      f"{grown / n:.2f} B/user, populated in {time.time() - start:.0f} s", flush=True)
                if not server.alive():
                    raise RuntimeError(f"{kind} died while populating {n} users")
            finally:
                server.stop()
        table.add("memory", f"resident bytes per user, {n:,} users", row["redis"], row["presenced"],
                  better="lower", fmt="{:.2f}")


def fanout_storm(table, subscribers, users):
    """PING round trips of unrelated clients while a pub/sub backlog is delivered: presenced
    brings `users` online (one event each on presence:<id>), Redis gets one PUBLISH of the same
    JSON per user; `subscribers` clients take every event on PSUBSCRIBE presence:*."""
    results = {}
    for kind in ("redis", "presenced"):
        server = Server(kind, extra=["--ttl", "3600"])
        try:
            cmd = ["taskset", "-c", "1", FANOUT_STORM, "--target", kind, "--port", str(server.port),
                   "--subscribers", str(subscribers), "--users", str(users), "--json"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                raise RuntimeError(f"fanout-storm against {kind} failed: {out.stdout} {out.stderr}")
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
            if not server.alive():
                raise RuntimeError(f"{kind} died during the fan-out storm")
        finally:
            server.stop()
        r = results[kind]
        print(f"  fanout-storm {kind}: {r['delivered']:,} of {r['expected']:,} deliveries in "
              f"{r['delivered_s']:.2f} s; PING p50 {r['ping_p50_ms']} ms, p99 {r['ping_p99_ms']} ms, "
              f"max {r['ping_max_ms']} ms over {r['pings']} round trips", flush=True)
    r, p = results["redis"], results["presenced"]
    label = f"{subscribers} x {users:,}"
    table.add("fanout-storm", f"all delivered, s ({label})", r["delivered_s"], p["delivered_s"],
              better="lower", fmt="{:.2f}")
    table.add("fanout-storm", "unrelated PING p99 ms", r["ping_p99_ms"], p["ping_p99_ms"],
              better="lower", fmt="{:.2f}")
    table.add("fanout-storm", "unrelated PING max ms", r["ping_max_ms"], p["ping_max_ms"],
              better="lower", fmt="{:.2f}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--only", default="throughput,storm,fanout,memory",
                        help="comma-separated parts to run (throughput, storm, fanout, memory)")
    args = parser.parse_args()
    table = Table()
    if args.quick:
        users, secs, storm, storm_wait, mem, mem_only = 1_000_000, 3, 100_000, 60, [1_000_000], []
        fanout_subscribers, fanout_users = 50, 20_000
    else:
        fanout_subscribers, fanout_users = 200, 100_000
        users, secs, storm, storm_wait, mem, mem_only = (10_000_000, 10, 1_000_000, 120,
                                                         [10_000_000, 100_000_000], [1_000_000_000])
    print(f"presenced vs redis-server ({'quick' if args.quick else 'full'} run)", flush=True)
    parts = set(args.only.split(","))
    if "throughput" in parts:
        throughput(table, users, secs)
    storm_results = expiry_storm(table, storm, storm_wait) if "storm" in parts else None
    if "fanout" in parts:
        fanout_storm(table, fanout_subscribers, fanout_users)
    if "memory" in parts:
        memory(table, mem, mem_only)
    print()
    print(table.markdown())
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table.markdown() + "\n")
    missing = storm - storm_results["presenced"]["delivered"] if storm_results else 0
    if missing:
        print(f"FAIL: presenced delivered {storm_results['presenced']['delivered']} of {storm} expiry events",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
