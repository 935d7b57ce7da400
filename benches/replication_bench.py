"""Replication side by side: a presenced leader with two followers, and a redis-server master
with two replicas, measured the same way in the same run on the same machine.

For each server kind (fresh processes each time):
1. populate U users on the leader and wait until both followers hold them;
2. under the heartbeat benchmark (loadgen `heartbeat` against the leader for S seconds: presenced
   `HEARTBEAT id`, Redis `SET user:id:presence online EX 30`):
   - stream bytes per client byte: the leader's `master_repl_offset` moved over its
     `total_net_input_bytes` moved;
   - follower lag: a probe writes a fresh user on the leader every 10 ms (presenced
     `HEARTBEAT <id> TTL 60`, Redis `SET probe:<n> 1 EX 60`) and polls the first follower until
     it shows it (`STATUS` online, `EXISTS` 1); lag is acknowledgement to first sight, p50/p99;
3. read scaling: loadgen `lookup` (presenced `MSTATUS` of 100 users, Redis `MGET` of 100 keys)
   for S seconds against the leader alone, then three loadgens at once against the leader and
   both followers; users looked up per second, summed.

Servers run with one thread each (`--threads 1 --shards 1`; Redis is single-threaded); nothing
is pinned (three servers and their clients share the machine's cores, which bounds the
read-scaling figure on a small machine). Prints one table; `--quick` shrinks sizes for a smoke
run. docs/BENCHMARKS.md records the full run and its command.

Usage: python3 benches/replication_bench.py [--quick] [--users U] [--secs S]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESENCED = os.path.join(ROOT, "target", "release", "presenced")
LOADGEN = os.path.join(ROOT, "target", "release", "loadgen")

# The failover tests' helpers: a free loopback port, and a bounded wait for a condition.
sys.path.insert(0, os.path.join(ROOT, "tests", "failover"))
from cluster import free_port, wait_for  # noqa: E402


class Node:
    def __init__(self, kind, leader_port=None):
        self.kind = kind
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"repl-bench-{kind}-")
        if kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no",
                   "--dir", self.dir, "--loglevel", "warning", "--repl-diskless-sync", "yes",
                   "--repl-diskless-sync-delay", "0"]
            if leader_port:
                cmd += ["--replicaof", "127.0.0.1", str(leader_port)]
        else:
            cmd = [PRESENCED, "--port", str(self.port), "--threads", "1", "--shards", "1",
                   "--snapshot-interval", "0", "--dir", self.dir, "--log-level", "warn"]
            if leader_port:
                cmd += ["--replicaof", "127.0.0.1", str(leader_port)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, protocol=2)
        wait_for(self.client.ping, 30, f"{kind} on port {self.port}")

    def info(self, section, field):
        value = self.client.info(section).get(field, 0)
        return int(value) if isinstance(value, (int, str)) and str(value).isdigit() else value

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        subprocess.run(["rm", "-rf", self.dir])


def loadgen(node, scenario, *args):
    cmd = [LOADGEN, "--target", node.kind, "--port", str(node.port), "--server-pid",
           str(node.proc.pid), "--scenario", scenario, "--json", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, what):
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen {what} failed: {out} {err}")
    import json
    return json.loads(out.strip().splitlines()[-1])


def caught_up(leader, followers, timeout_s=120):
    def check():
        target = leader.info("replication", "master_repl_offset")
        return all(f.info("replication", "master_link_status") == "up"
                   and f.info("replication", "slave_repl_offset") >= target for f in followers)
    wait_for(check, timeout_s, "followers to catch up")


def probe_lag(leader, follower, kind, users, stop):
    """Acknowledgement on the leader to first sight on the follower, one probe per 10 ms."""
    lags_ms = []
    n = 0
    while not stop.is_set():
        n += 1
        if kind == "presenced":
            user = str(users + n)
            leader.client.execute_command("HEARTBEAT", user, "TTL", 60)
            acked = time.perf_counter()
            seen = lambda: follower.client.execute_command("STATUS", user)[0] == b"online"
        else:
            key = f"probe:{n}"
            leader.client.set(key, 1, ex=60)
            acked = time.perf_counter()
            seen = lambda: follower.client.exists(key) == 1
        give_up = acked + 10
        while not seen():
            if time.perf_counter() > give_up:
                raise RuntimeError(f"{kind}: probe {n} not on the follower within 10 s")
        lags_ms.append((time.perf_counter() - acked) * 1000)
        time.sleep(0.01)
    return lags_ms


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def measure(kind, users, secs):
    leader = Node(kind)
    followers = [Node(kind, leader.port) for _ in range(2)]
    nodes = [leader, *followers]
    try:
        caught_up(leader, followers)
        finish(loadgen(leader, "populate", "--users", users, "--ttl-s", 3600,
                       "--batch", 1000 if kind == "presenced" else 100), "populate")
        caught_up(leader, followers)

        input0 = leader.info("stats", "total_net_input_bytes")
        offset0 = leader.info("replication", "master_repl_offset")
        load = loadgen(leader, "heartbeat", "--users", users, "--duration-s", secs)
        stop = threading.Event()
        result = {}
        prober = threading.Thread(
            target=lambda: result.update(lags=probe_lag(leader, followers[0], kind, users, stop)))
        prober.start()
        heartbeat = finish(load, "heartbeat")
        stop.set()
        prober.join()
        caught_up(leader, followers)
        client_bytes = leader.info("stats", "total_net_input_bytes") - input0
        stream_bytes = leader.info("replication", "master_repl_offset") - offset0
        lags = result["lags"]

        alone = finish(loadgen(leader, "lookup", "--users", users, "--duration-s", secs), "lookup")
        spread = [loadgen(n, "lookup", "--users", users, "--duration-s", secs) for n in nodes]
        spread = [finish(p, "lookup spread") for p in spread]
        return {
            "heartbeats_per_s": heartbeat["ops_per_s"],
            "stream_per_client_byte": stream_bytes / client_bytes,
            "lag_p50_ms": percentile(lags, 50),
            "lag_p99_ms": percentile(lags, 99),
            "probes": len(lags),
            "lookup_alone": alone["users_per_s"],
            "lookup_spread": sum(r["users_per_s"] for r in spread),
        }
    finally:
        for n in nodes:
            n.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--users", type=int)
    parser.add_argument("--secs", type=int)
    args = parser.parse_args()
    users = args.users or (100_000 if args.quick else 1_000_000)
    secs = args.secs or (2 if args.quick else 10)
    for binary in (PRESENCED, LOADGEN):
        if not os.path.exists(binary):
            sys.exit(f"{binary} is missing: cargo build --release --workspace")
    figures = {}
    for kind in ("redis", "presenced"):
        print(f"{kind}: leader + 2 followers, {users:,} users, {secs} s per phase", flush=True)
        figures[kind] = measure(kind, users, secs)
        print(f"  {figures[kind]}", flush=True)
    rows = [
        ("heartbeats/s on the leader (loadgen heartbeat)", "heartbeats_per_s", "{:,.0f}"),
        ("stream bytes per client byte", "stream_per_client_byte", "{:.1%}"),
        ("follower lag p50, ms (ack to first sight)", "lag_p50_ms", "{:.2f}"),
        ("follower lag p99, ms", "lag_p99_ms", "{:.2f}"),
        ("lag probes", "probes", "{:,}"),
        ("lookups/s, leader alone (users)", "lookup_alone", "{:,.0f}"),
        ("lookups/s, leader + 2 followers (users)", "lookup_spread", "{:,.0f}"),
    ]
    print("\n| measure | Redis 7 | presenced |\n|---|---|---|")
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(figures['redis'][key])} | "
              f"{fmt.format(figures['presenced'][key])} |")


if __name__ == "__main__":
    main()
