"""A presenced (or redis-server) leader, two followers and three real redis-sentinel processes
on loopback ports (down-after-milliseconds 1000, failover-timeout 5000), shared by the scripts
in this directory: sentinel_failover.py and sentinel_clients.py import it from their own
directory (a script's directory is the first entry of sys.path).

Helpers: free_port, wait_for (polls until a check returns a true value, ignoring connection
errors while it waits), state_of (a STATUS entry's state in RESP3 or RESP2) and Cluster.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

MASTER = "mymaster"


_GIVEN_PORTS = set()


def free_port():
    """A free loopback port, never one this process handed out before: a port bound and
    released is often handed out again by the kernel at once, and two servers given the same
    one fail to start."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def wait_for(check, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")


def state_of(status):
    """A STATUS entry's state: a map in RESP3 (redis-py 8's default), a pair in RESP2."""
    state = status.get(b"state", status.get("state")) if isinstance(status, dict) else status[0]
    return state.decode() if isinstance(state, bytes) else state


class Cluster:
    """Node i listens on ports[i] and runs as procs[f"node{i}"]; sentinel i on
    sentinel_ports[i] as procs[f"sentinel{i}"]. `ttl_s` is presenced's --ttl (its default when
    None). stop() kills whatever still runs and removes the temporary directory."""

    def __init__(self, presenced, sentinel, redis_mode, ttl_s=None, settings=()):
        self.presenced = presenced
        # Config-file lines every presenced node starts with (`repl-coalesce-ms 0`, ...).
        self.settings = list(settings)
        self.redis_mode = redis_mode
        self.sentinel_bin = sentinel
        self.ttl_s = ttl_s
        self.root = tempfile.mkdtemp(prefix="presenced-failover-")
        self.procs = {}
        self.ports = [free_port() for _ in range(3)]
        self.sentinel_ports = [free_port() for _ in range(3)]

    def start_node(self, i, replicaof=None):
        port = self.ports[i]
        if self.redis_mode:
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", self.root, "--dbfilename", f"d{i}.rdb"]
            if replicaof is not None:
                args += ["--replicaof", "127.0.0.1", str(replicaof)]
            log = open(os.path.join(self.root, f"node{i}.log"), "ab")
            self.procs[f"node{i}"] = subprocess.Popen(args, stdout=log, stderr=log)
            wait_for(lambda: redis.Redis(host="127.0.0.1", port=port).ping(), 20,
                     f"node {i} to answer")
            return
        # Each node runs from a config file of its own, so that Sentinel's reconfiguration
        # (SLAVEOF + CONFIG REWRITE) is persisted as it would be in production.
        conf = self.conf_path(i)
        if not os.path.exists(conf):
            with open(conf, "w") as f:
                f.write(f"# node {i}, managed by Sentinel\n")
                for line in self.settings:
                    f.write(line + "\n")
        args = [self.presenced, conf, "--port", str(port), "--dir", os.path.join(self.root, f"d{i}"),
                "--snapshot-interval", "0", "--shards", "2"]
        if self.ttl_s is not None:
            args += ["--ttl", str(self.ttl_s)]
        args += ["--log-level", "warn"]
        if replicaof is not None:
            args += ["--replicaof", "127.0.0.1", str(replicaof)]
        log = open(os.path.join(self.root, f"node{i}.log"), "ab")
        self.procs[f"node{i}"] = subprocess.Popen(args, stdout=log, stderr=log)
        wait_for(lambda: redis.Redis(host="127.0.0.1", port=port).ping(), 20, f"node {i} to answer")

    def conf_path(self, i):
        return os.path.join(self.root, f"node{i}.conf")

    def conf_replicaof(self, i):
        """The `replicaof` line of node i's config file, as (host, port), or None."""
        with open(self.conf_path(i)) as f:
            for line in f:
                words = line.split()
                if len(words) == 3 and words[0] == "replicaof":
                    return (words[1], words[2])
        return None

    def start_sentinels(self):
        for i, port in enumerate(self.sentinel_ports):
            conf = os.path.join(self.root, f"sentinel{i}.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndaemonize no\n"
                        f"logfile {os.path.join(self.root, f'sentinel{i}.log')}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {self.ports[0]} 2\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 5000\n"
                        f"sentinel parallel-syncs {MASTER} 1\n")
            self.procs[f"sentinel{i}"] = subprocess.Popen(
                [self.sentinel_bin, conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
