#!/usr/bin/env python3
"""Failover under Redis Sentinel: a presenced leader, two followers and three real
redis-sentinel processes (down-after-milliseconds 1000) on loopback ports. A redis-py client
heartbeats through Sentinel (`Sentinel.master_for`), each heartbeat to a user of its own, so
each acknowledged heartbeat is one user that must be online afterwards; subscribers on both
followers count offline events (every user has a 120 s TTL: any offline event is false). The
leader is killed with SIGKILL under that load.

Prints the time to promotion, the time until writes succeed again, the acknowledged heartbeats
lost out of how many (each counted) beside the replication lag the leader last reported, the
false offline events, and the time until the restarted old leader is a follower again. Exits 1
if no follower is promoted, writes never resume, the old leader never rejoins, or a subscriber
sees a false offline event; lost heartbeats are reported, not judged.

With `--server redis`, the same run against real redis-server processes (heartbeats are
`SET user:<id>:presence online EX 120`, a lost one is a key missing on the new master; no
subscribers), for the side-by-side figures in docs/BENCHMARKS.md.

Usage: sentinel_failover.py --presenced PATH [--server presenced|redis] [--sentinel PATH]
       [--load-s 3] [--setting "repl-coalesce-ms 0" ...]
"""

import argparse
import signal
import sys
import threading
import time

try:
    import redis
    from redis.sentinel import Sentinel
except ImportError as err:
    print(f"sentinel_failover: redis-py is missing ({err}); run scripts/install-test-deps",
          file=sys.stderr)
    sys.exit(2)

from cluster import MASTER, Cluster, wait_for, state_of  # noqa: E402 (after the redis check)

TTL_S = 120


class Heartbeats(threading.Thread):
    """Heartbeats a new user per call through Sentinel, remembering each acknowledged one."""

    def __init__(self, sentinel, redis_mode):
        super().__init__(daemon=True)
        self.redis_mode = redis_mode
        self.master = sentinel.master_for(MASTER, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = []  # (user, monotonic times the request was sent and acknowledged)
        self.errors = 0
        self.next_user = 0

    def run(self):
        while not self.stop.is_set():
            user = f"hb-{self.next_user}"
            sent_at = time.monotonic()
            try:
                if self.redis_mode:
                    self.master.set(f"user:{user}:presence", "online", ex=TTL_S)
                else:
                    self.master.execute_command("HEARTBEAT", user, "TTL", TTL_S)
            except (redis.RedisError, OSError):
                self.errors += 1
                time.sleep(0.02)
                continue
            with self.lock:
                self.acked.append((user, sent_at, time.monotonic()))
            self.next_user += 1

    def acked_before(self, t):
        with self.lock:
            return [u for u, _, at in self.acked if at <= t]

    def first_ack_sent_after(self, t):
        """When the first heartbeat sent after `t` was acknowledged (a reply already on its way
        from the old leader when it died does not count)."""
        with self.lock:
            return next((at for _, sent, at in self.acked if sent > t), None)


class OfflineCounter(threading.Thread):
    def __init__(self, port):
        super().__init__(daemon=True)
        self.pubsub = redis.Redis(host="127.0.0.1", port=port).pubsub()
        self.pubsub.psubscribe("presence:*")
        self.offline = 0
        self.events = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.2)
            except (redis.RedisError, OSError):
                return
            if message and message["type"] == "pmessage":
                self.events += 1
                if b'"state":"offline"' in message["data"]:
                    self.offline += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presenced", required=True)
    parser.add_argument("--sentinel", default="redis-sentinel")
    parser.add_argument("--load-s", type=float, default=3.0)
    parser.add_argument("--server", choices=["presenced", "redis"], default="presenced")
    parser.add_argument("--setting", action="append", default=[],
                        help="a config-file line for every presenced node, e.g. "
                             "'repl-coalesce-ms 0' (repeatable)")
    args = parser.parse_args()
    redis_mode = args.server == "redis"
    cluster = Cluster(args.presenced, args.sentinel, redis_mode, ttl_s=TTL_S,
                      settings=args.setting)
    failures = []
    try:
        cluster.start_node(0)
        cluster.start_node(1, replicaof=cluster.ports[0])
        cluster.start_node(2, replicaof=cluster.ports[0])
        cluster.start_sentinels()
        probe = redis.Redis(host="127.0.0.1", port=cluster.sentinel_ports[0], decode_responses=True)
        wait_for(lambda: int(probe.sentinel_master(MASTER)["num-slaves"]) == 2
                 and int(probe.sentinel_master(MASTER)["num-other-sentinels"]) == 2,
                 30, "the sentinels to see two followers and each other")
        sentinel = Sentinel([("127.0.0.1", p) for p in cluster.sentinel_ports], socket_timeout=0.5)
        counters = [] if redis_mode else [OfflineCounter(cluster.ports[i]) for i in (1, 2)]
        for c in counters:
            c.start()
        load = Heartbeats(sentinel, redis_mode)
        load.start()
        time.sleep(args.load_s)

        leader = redis.Redis(host="127.0.0.1", port=cluster.ports[0])
        repl = leader.info("replication")
        leader_offset = repl["master_repl_offset"]
        lags = [(repl[k]["offset"], repl[k]["lag"]) for k in sorted(repl) if k.startswith("slave")
                and isinstance(repl[k], dict)]
        killed_at = time.monotonic()
        cluster.procs["node0"].send_signal(signal.SIGKILL)
        cluster.procs["node0"].wait()
        # Heartbeats sent between the signal and the process's end may still have been
        # acknowledged by the old leader: they count as acknowledged (and maybe lost), and the
        # first write "after the kill" is one sent once the process is gone.
        dead_at = time.monotonic()
        old = ("127.0.0.1", cluster.ports[0])

        def promoted():
            addr = probe.sentinel_get_master_addr_by_name(MASTER)
            return addr if addr and (addr[0], int(addr[1])) != old else None
        new_addr = wait_for(promoted, 30, "Sentinel to promote a follower")
        promotion_s = time.monotonic() - killed_at
        first_write = wait_for(lambda: load.first_ack_sent_after(dead_at), 30,
                               "writes to resume")
        writes_s = first_write - killed_at
        time.sleep(2.0)
        load.stop.set()
        load.join()

        acked = load.acked_before(dead_at)
        new_leader = redis.Redis(host="127.0.0.1", port=int(new_addr[1]))
        lost = 0
        for start in range(0, len(acked), 1000):
            batch = acked[start:start + 1000]
            if redis_mode:
                values = new_leader.mget([f"user:{u}:presence" for u in batch])
                lost += sum(1 for v in values if v is None)
            else:
                states = new_leader.execute_command("MSTATUS", *batch)
                lost += sum(1 for s in states if state_of(s) == "offline")

        restarted_at = time.monotonic()
        # Restarted as it was first started: a leader; Sentinel makes it a follower.
        cluster.start_node(0)
        rejoin = wait_for(lambda: redis.Redis(host="127.0.0.1", port=cluster.ports[0]).info("replication")
                          .get("master_link_status") == "up", 60,
                          "the old leader to come back as a follower")
        rejoin_s = time.monotonic() - restarted_at if rejoin else None
        for c in counters:
            c.stop.set()
        false_offline = sum(c.offline for c in counters)
        if not redis_mode:
            # Sentinel's SLAVEOF + CONFIG REWRITE reached the files: every node but the new
            # leader names it, the new leader names nobody.
            new_index = cluster.ports.index(int(new_addr[1]))

            def wrong_files():
                return [(i, cluster.conf_replicaof(i)) for i in range(3)
                        if cluster.conf_replicaof(i) != (None if i == new_index
                                                         else ("127.0.0.1", str(new_addr[1])))]
            # Sentinel reconfigures the followers one at a time (parallel-syncs 1): wait for
            # the last rewrite rather than read the files once.
            try:
                wait_for(lambda: not wrong_files(), 30, "every config file to name its new role")
            except RuntimeError:
                pass
            wrong = wrong_files()
            if wrong:
                failures.append(f"config files not rewritten to the new role: {wrong}")
            else:
                print("config files rewritten by Sentinel: every follower's replicaof names "
                      "the new leader")

        print(f"server: {args.server}")
        print(f"promotion announced {promotion_s:.2f} s after SIGKILL "
              f"(new leader 127.0.0.1:{new_addr[1]})")
        print(f"writes through Sentinel succeeded again {writes_s:.2f} s after SIGKILL "
              f"({load.errors} failed attempts meanwhile)")
        print(f"acknowledged heartbeats lost: {lost} of {len(acked)} "
              f"(leader's last report: master_repl_offset {leader_offset}, "
              f"followers at (offset, lag s) {lags})")
        print(f"false offline events seen by follower subscribers: {false_offline} "
              f"(of {sum(c.events for c in counters)} events)")
        print(f"restarted old leader back as a follower after {rejoin_s:.2f} s")
        if false_offline:
            failures.append(f"{false_offline} false offline events")
    except RuntimeError as err:
        failures.append(str(err))
    finally:
        cluster.stop()
    for failure in failures:
        print(f"FAIL {failure}")
    print(f"sentinel failover: {'ok' if not failures else 'failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
