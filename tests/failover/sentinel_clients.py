#!/usr/bin/env python3
"""Real clients through real Redis Sentinel against presenced: a presenced leader, two followers
and three redis-sentinel processes on loopback ports (the cluster of sentinel_failover.py, from
cluster.py: down-after-milliseconds 1000, failover-timeout 5000).

`--client redis-py` (the default) checks redis-py 8 (RESP3) through `redis.sentinel.Sentinel`:
- discover_master names the leader, discover_slaves both followers;
- master_for: HEARTBEAT, SET ... EX and OFFLINE work, on the leader;
- slave_for: the client is on a follower (ROLE and INFO replication over that client); STATUS,
  MSTATUS and GET read what master_for wrote (polled until replicated); a write through it
  fails with ReadOnlyError;
- pub/sub on a follower (slave_for(...).pubsub()): a heartbeat with TTL 1 on the leader, then
  an OFFLINE of another user, each produce the offline event on the follower's subscriber;
- failover: the leader is killed with SIGKILL; once the sentinels promote a follower, master_for's
  client writes again (on the new leader), slave_for's client reads again (from the remaining
  follower, or from the master when redis-py finds no follower: it says which), and a fresh
  follower subscriber gets an OFFLINE sent through master_for.

`--client ioredis`: this script starts the cluster, waits until the sentinels see both
followers and each other, then runs `node tests/clients/node/sentinel_clients.js --sentinels
127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3 --name mymaster --leader-pid PID` and passes its output
through: the Node script checks ioredis 5 with role 'master' and 'slave' and a follower
subscriber, kills the leader itself (process.kill(PID, 'SIGKILL')) and checks that its master
connection writes again after the failover. Its exit status is this script's.

Each check prints a line as it passes. Any failure prints `FAIL <what>` and exits 1; every
process started is stopped on the way out, whatever happened.

Usage: sentinel_clients.py --presenced PATH [--client redis-py|ioredis] [--sentinel PATH]
       [--node PATH]
"""

import argparse
import os
import signal
import subprocess
import sys
import time

try:
    import redis
    from redis.exceptions import ReadOnlyError
    from redis.sentinel import Sentinel
except ImportError as err:
    print(f"sentinel_clients: redis-py is missing ({err}); run scripts/install-test-deps",
          file=sys.stderr)
    sys.exit(2)

from cluster import MASTER, Cluster, state_of, wait_for  # noqa: E402 (after the redis check)

# Bounds on the waits (they end as soon as the awaited thing happens).
REPLICATION_S = 10
EVENT_S = 10
FAILOVER_S = 30
TIMEOUT_S = 1.0  # each client's socket timeouts


class CheckFailed(Exception):
    pass


def passed(what):
    print(f"ok {what}", flush=True)


def expect(condition, what, detail=""):
    if not condition:
        raise CheckFailed(f"{what}: {detail}" if detail else what)
    passed(what)


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def port_of(client):
    """The port of the node a client's (pooled, reused) connection is on, asked over it."""
    return int(client.info("server")["tcp_port"])


def role_of(client):
    return text(client.execute_command("ROLE")[0])


def next_event(pubsub, channel, state, timeout_s):
    """Waits for a message on `channel` whose payload has "state":"<state>"; returns it."""
    needle = f'"state":"{state}"'.encode()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if (message and message["type"] == "message" and text(message["channel"]) == channel
                and needle in message["data"]):
            return message["data"]
    raise CheckFailed(f"no {state} event on {channel} within {timeout_s} s")


def subscribed(pubsub, channel):
    """Subscribes and waits for the confirmation, so no later event can be missed."""
    pubsub.subscribe(channel)
    deadline = time.monotonic() + EVENT_S
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] == "subscribe" and text(message["channel"]) == channel:
            return
    raise CheckFailed(f"no subscribe confirmation for {channel}")


def start(cluster):
    cluster.start_node(0)
    cluster.start_node(1, replicaof=cluster.ports[0])
    cluster.start_node(2, replicaof=cluster.ports[0])
    cluster.start_sentinels()
    probe = redis.Redis(host="127.0.0.1", port=cluster.sentinel_ports[0], decode_responses=True)
    wait_for(lambda: int(probe.sentinel_master(MASTER)["num-slaves"]) == 2
             and int(probe.sentinel_master(MASTER)["num-other-sentinels"]) == 2,
             30, "the sentinels to see two followers and each other")
    return probe


def check_redis_py(cluster):
    leader = ("127.0.0.1", cluster.ports[0])
    followers = {cluster.ports[1], cluster.ports[2]}
    sentinel = Sentinel([("127.0.0.1", p) for p in cluster.sentinel_ports],
                        socket_timeout=TIMEOUT_S)

    master_addr = sentinel.discover_master(MASTER)
    expect((master_addr[0], int(master_addr[1])) == leader,
           f"discover_master names the leader 127.0.0.1:{leader[1]}", str(master_addr))
    # Sentinel lists a follower once it has seen it in the leader's INFO; each is usable (not
    # s_down) once that sentinel has had its first reply from it.
    slaves = wait_for(lambda: {int(p) for _, p in sentinel.discover_slaves(MASTER)} == followers
                      and sentinel.discover_slaves(MASTER), 20, "discover_slaves to list both")
    expect({int(p) for _, p in slaves} == followers,
           f"discover_slaves lists both followers {sorted(followers)}", str(slaves))

    # --- master_for
    master = sentinel.master_for(MASTER, socket_timeout=TIMEOUT_S,
                                 socket_connect_timeout=TIMEOUT_S)
    expect(port_of(master) == leader[1] and role_of(master) == "master",
           "master_for is on the leader (INFO server, ROLE)")
    expect(master.execute_command("HEARTBEAT", "py-a") == 1, "master_for: HEARTBEAT py-a -> 1")
    expect(master.execute_command("HEARTBEAT", "py-a") == 0,
           "master_for: HEARTBEAT py-a again -> 0")
    expect(master.set("user:py-b:presence", "online", ex=120) is True,
           "master_for: SET user:py-b:presence online EX 120")
    expect(master.execute_command("HEARTBEAT", "py-c", "TTL", 120) == 1,
           "master_for: HEARTBEAT py-c TTL 120 -> 1")
    master.execute_command("OFFLINE", "py-c")
    expect(state_of(master.execute_command("STATUS", "py-c")) == "offline",
           "master_for: OFFLINE py-c, then STATUS py-c is offline")

    # --- slave_for
    slave = sentinel.slave_for(MASTER, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    slave_port = port_of(slave)
    repl = slave.info("replication")
    expect(slave_port in followers and role_of(slave) == "slave" and repl["role"] == "slave"
           and int(repl["master_port"]) == leader[1],
           f"slave_for is on follower 127.0.0.1:{slave_port} (ROLE slave, INFO role:slave, "
           "master_port the leader's)", str(repl))
    wait_for(lambda: [state_of(s) for s in slave.execute_command("MSTATUS", "py-a", "py-b", "py-c")]
             == ["online", "online", "offline"], REPLICATION_S, "the follower to have the writes")
    passed("slave_for: MSTATUS py-a py-b py-c -> online online offline")
    expect(state_of(slave.execute_command("STATUS", "py-b")) == "online",
           "slave_for: STATUS py-b -> online")
    expect(slave.get("user:py-b:presence") == b"online",
           "slave_for: GET user:py-b:presence -> online")
    for what, write in [("HEARTBEAT", lambda: slave.execute_command("HEARTBEAT", "py-d")),
                        ("SET", lambda: slave.set("user:py-d:presence", "online", ex=30)),
                        ("OFFLINE", lambda: slave.execute_command("OFFLINE", "py-a"))]:
        try:
            write()
        except ReadOnlyError as err:
            expect("read only replica" in str(err), f"slave_for: {what} -> ReadOnlyError", str(err))
        else:
            raise CheckFailed(f"slave_for: {what} was accepted by a follower")
    expect(port_of(slave) == slave_port, "slave_for's client is still on the same follower")

    # --- pub/sub on a follower
    pubsub = slave.pubsub()
    subscribed(pubsub, "presence:py-e")
    sub_port = pubsub.connection.port
    expect(sub_port in followers, f"slave_for().pubsub() is on follower 127.0.0.1:{sub_port}")
    subscribed(pubsub, "presence:py-f")
    expect(master.execute_command("HEARTBEAT", "py-e", "TTL", 1) == 1,
           "master_for: HEARTBEAT py-e TTL 1")
    next_event(pubsub, "presence:py-e", "online", EVENT_S)
    passed("follower subscriber: online event for py-e")
    started = time.monotonic()
    next_event(pubsub, "presence:py-e", "offline", EVENT_S)
    passed(f"follower subscriber: offline event for py-e when its TTL ran out "
           f"({time.monotonic() - started:.2f} s after the online event)")
    master.execute_command("HEARTBEAT", "py-f", "TTL", 120)
    next_event(pubsub, "presence:py-f", "online", EVENT_S)
    master.execute_command("OFFLINE", "py-f")
    next_event(pubsub, "presence:py-f", "offline", EVENT_S)
    passed("follower subscriber: offline event for py-f after OFFLINE through master_for")
    pubsub.close()

    # Both followers have everything written so far (whichever is promoted keeps it).
    for port in sorted(followers):
        direct = redis.Redis(host="127.0.0.1", port=port)
        wait_for(lambda: state_of(direct.execute_command("STATUS", "py-b")) == "online",
                 REPLICATION_S, f"follower {port} to have py-b")
        direct.close()

    # --- failover
    probe = redis.Redis(host="127.0.0.1", port=cluster.sentinel_ports[0], decode_responses=True)
    killed_at = time.monotonic()
    cluster.procs["node0"].send_signal(signal.SIGKILL)
    cluster.procs["node0"].wait()
    passed(f"leader 127.0.0.1:{leader[1]} killed with SIGKILL")

    def promoted():
        addr = sentinel.discover_master(MASTER)
        return addr if (addr[0], int(addr[1])) != leader else None
    new_addr = wait_for(promoted, FAILOVER_S, "the sentinels to promote a follower")
    new_port = int(new_addr[1])
    expect(new_port in followers,
           f"discover_master names the promoted follower 127.0.0.1:{new_port} "
           f"({time.monotonic() - killed_at:.2f} s after SIGKILL)", str(new_addr))

    attempts = 0
    deadline = time.monotonic() + FAILOVER_S
    while True:
        attempts += 1
        try:
            resumed = master.execute_command("HEARTBEAT", "py-g", "TTL", 120)
            break
        except (redis.ConnectionError, redis.TimeoutError, ReadOnlyError) as err:
            if time.monotonic() > deadline:
                raise CheckFailed(f"master_for never wrote again within {FAILOVER_S} s: {err!r}")
            time.sleep(0.1)
    # 1, or 0 when redis-py's own retry resent a heartbeat whose first reply timed out.
    expect(resumed in (0, 1), f"master_for: HEARTBEAT writes again "
           f"{time.monotonic() - killed_at:.2f} s after SIGKILL ({attempts} attempts)")
    expect(port_of(master) == new_port and role_of(master) == "master",
           f"master_for is on the new leader 127.0.0.1:{new_port}")
    expect(state_of(master.execute_command("STATUS", "py-g")) == "online",
           "master_for: STATUS py-g -> online")
    expect(state_of(master.execute_command("STATUS", "py-b")) == "online",
           "master_for: py-b (written before the failover) is online on the new leader")

    remaining = (followers - {new_port}).pop()
    direct = redis.Redis(host="127.0.0.1", port=remaining, decode_responses=True)
    wait_for(lambda: direct.info("replication").get("master_port") == new_port
             and direct.info("replication").get("master_link_status") == "up",
             FAILOVER_S, f"follower {remaining} to replicate the new leader")
    direct.close()
    passed(f"follower 127.0.0.1:{remaining} replicates the new leader")

    reads = wait_for(lambda: [state_of(s) for s in
                              slave.execute_command("MSTATUS", "py-b", "py-g")] == ["online"] * 2,
                     FAILOVER_S, "slave_for to read again")
    on = port_of(slave)
    if on == remaining:
        where = f"the remaining follower 127.0.0.1:{on} (ROLE {role_of(slave)})"
    else:
        where = (f"127.0.0.1:{on}, the new master (redis-py's fallback when Sentinel lists no "
                 f"usable follower; ROLE {role_of(slave)})")
    expect(reads and on in (remaining, new_port), f"slave_for reads after the failover from {where}")

    fresh = slave.pubsub()
    subscribed(fresh, "presence:py-h")
    master.execute_command("HEARTBEAT", "py-h", "TTL", 120)
    next_event(fresh, "presence:py-h", "online", EVENT_S)
    master.execute_command("OFFLINE", "py-h")
    next_event(fresh, "presence:py-h", "offline", EVENT_S)
    expect(True, f"fresh slave_for().pubsub() on 127.0.0.1:{fresh.connection.port} after the "
           "failover: offline event for py-h after OFFLINE through master_for")
    fresh.close()
    probe.close()
    print("sentinel clients (redis-py): ok", flush=True)


def check_ioredis(cluster, node):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients", "node",
                          "sentinel_clients.js")
    sentinels = ",".join(f"127.0.0.1:{p}" for p in cluster.sentinel_ports)
    run = subprocess.run([node, os.path.normpath(script), "--sentinels", sentinels,
                          "--name", MASTER, "--leader-pid", str(cluster.procs["node0"].pid),
                          "--leader", f"127.0.0.1:{cluster.ports[0]}"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=120)
    sys.stdout.write(run.stdout.decode(errors="replace"))
    sys.stderr.write(run.stderr.decode(errors="replace"))
    sys.stdout.flush()
    if run.returncode != 0:
        raise CheckFailed(f"sentinel_clients.js exited with status {run.returncode}")


def dump_logs(cluster):
    """The nodes' and sentinels' logs, to stderr, before stop() removes them."""
    for name in sorted(os.listdir(cluster.root)):
        if name.endswith(".log"):
            with open(os.path.join(cluster.root, name), errors="replace") as f:
                lines = f.readlines()[-40:]
            sys.stderr.write(f"--- {name} (last {len(lines)} lines) ---\n{''.join(lines)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presenced", required=True)
    parser.add_argument("--client", choices=["redis-py", "ioredis"], default="redis-py")
    parser.add_argument("--sentinel", default="redis-sentinel")
    parser.add_argument("--node", default="node")
    args = parser.parse_args()
    cluster = Cluster(args.presenced, args.sentinel, redis_mode=False)
    failure = None
    try:
        start(cluster)
        passed("cluster up: leader 127.0.0.1:{}, followers {}, sentinels {}".format(
            cluster.ports[0], cluster.ports[1:], cluster.sentinel_ports))
        if args.client == "redis-py":
            check_redis_py(cluster)
        else:
            check_ioredis(cluster, args.node)
    except CheckFailed as err:
        failure = str(err)
    except Exception as err:  # noqa: BLE001 (any error is a failed run, reported as one)
        failure = f"{type(err).__name__}: {err}"
    finally:
        if failure:
            dump_logs(cluster)
        cluster.stop()
    if failure:
        print(f"FAIL {failure}", flush=True)
        print(f"sentinel clients ({args.client}): failed", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
