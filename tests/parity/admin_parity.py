#!/usr/bin/env python3
"""Admin-command parity: FLUSHDB, CLIENT REPLY, CLIENT KILL filters, CLIENT NO-EVICT, MEMORY
USAGE, the EXPIRE family's bounds and maxmemory (CONFIG SET, OOM refusals, transactions past
the limit), sent to a real redis-server and to presenced, every reply
compared byte for byte (the runner of transaction_parity.py: three connections per server, RESP2
and RESP3; a step marked `a!` expects no reply, and the next reply read shows none came).

Usage: admin_parity.py --presenced-port N [--host H] [--redis-server PATH]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transaction_parity import K, run_all  # noqa: E402

SEQUENCES = {
    "flushdb": [
        ("a", "SET", K(1), "online"),
        ("a", "FLUSHDB"),
        ("a", "EXISTS", K(1)),
        ("a", "FLUSHDB", "ASYNC"),
        ("a", "FLUSHDB", "SYNC"),
        ("a", "FLUSHDB", "NOW"),
    ],
    "client reply": [
        ("a", "CLIENT", "REPLY", "MAYBE"),
        ("a!", "CLIENT", "REPLY", "SKIP"),
        ("a!", "SET", K(2), "online"),
        ("a", "GET", K(2)),
        ("a!", "CLIENT", "REPLY", "OFF"),
        ("a!", "SET", K(2), "away"),
        ("a!", "PING"),
        ("a", "CLIENT", "REPLY", "ON"),
        ("a", "GET", K(2)),
    ],
    "client kill filters": [
        ("a", "CLIENT", "KILL", "TYPE", "foo"),
        ("a", "CLIENT", "KILL", "TYPE", "master"),
        ("a", "CLIENT", "KILL", "TYPE", "replica"),
        ("a", "CLIENT", "KILL", "USER", "nobody"),
        ("a", "CLIENT", "KILL", "USER", "default", "TYPE", "pubsub"),
        ("a", "CLIENT", "KILL", "MAXAGE", "x"),
        # MAXAGE with a number is Redis 7.4's; the Debian redis-server (7.0) refuses it.
        ("a", "CLIENT", "KILL", "LADDR", "127.0.0.1:1"),
        ("a", "CLIENT", "KILL", "ID", "0"),
        ("a", "CLIENT", "KILL", "SKIPME", "maybe"),
        ("a", "CLIENT", "KILL", "ADDR"),
        ("a", "CLIENT", "NO-EVICT", "on"),
        ("a", "CLIENT", "NO-EVICT", "maybe"),
    ],
    "client pause errors": [
        ("a", "CLIENT", "PAUSE", "abc"),
        ("a", "CLIENT", "PAUSE", "-1"),
        ("a", "CLIENT", "PAUSE", "10", "FOO"),
        ("a", "CLIENT", "PAUSE", "10", "WRITE", "x"),
        ("a", "CLIENT", "UNPAUSE", "x"),
        ("a", "CLIENT", "UNPAUSE"),
    ],
    "command getkeys and latency": [
        ("a", "COMMAND", "GETKEYS", "SET", K(5), "online", "EX", "30"),
        ("a", "COMMAND", "GETKEYS", "MGET", K(5), K(6), K(7)),
        ("a", "COMMAND", "GETKEYS", "MSET", K(5), "a", K(6), "b"),
        ("a", "COMMAND", "GETKEYS", "DEL", K(5), K(6)),
        ("a", "COMMAND", "GETKEYS", "PING"),
        ("a", "COMMAND", "GETKEYS", "NOSUCH", "x"),
        ("a", "COMMAND", "GETKEYS", "GET"),
        ("a", "COMMAND", "GETKEYS", "PING", "hello"),
        ("a", "COMMAND", "GETKEYS", "GET", K(5), K(6)),
        ("a", "COMMAND", "GETKEYS", "NOSUCH", "x", "y"),
        ("a", "LATENCY", "LATEST"),
        ("a", "LATENCY", "HISTORY", "command"),
        ("a", "LATENCY", "RESET"),
    ],
    "memory usage": [
        ("a", "MEMORY", "USAGE", K(3)),
        ("a", "SET", K(3), "online"),
        ("a", "MEMORY", "USAGE", K(3), "SAMPLES", "-1"),
        ("a", "MEMORY", "USAGE", K(3), "SAMPLES", "x"),
        ("a", "MEMORY", "USAGE", K(3), "FOO"),
        ("a", "MEMORY", "FOO"),
    ],
    "expire bounds": [
        ("a", "SET", K(4), "online"),
        ("a", "EXPIRE", K(4), "-9223372036854776"),
        ("a", "EXPIRE", K(4), "9223372036854775"),
        ("a", "PEXPIRE", K(4), "9223372036854775807"),
        ("a", "EXPIREAT", K(4), "9223372036854776"),
        ("a", "EXISTS", K(4)),
        ("a", "EXPIRE", K(4), "-9223372036854775"),
        ("a", "EXISTS", K(4)),
        ("a", "SET", K(4), "online"),
        ("a", "PEXPIRE", K(4), "-9223372036854775808"),
        ("a", "SET", K(4), "online", "EX", "9223372036854775"),
        ("a", "SET", K(4), "online", "EX", "-1"),
        ("a", "SET", K(4), "online", "EXAT", "9223372036854776"),
        ("a", "SET", K(4), "online", "EXAT", "9223372036854775"),
        ("a", "GETEX", K(4), "EX", "9223372036854776"),
        ("a", "EXPIREAT", K(4), "9223372036854775", "XX", "NX"),
    ],
    # Past maxmemory both refuse what would add a key; reads and deletes go on. (presenced
    # also lets a known user's status-word SET through, as a heartbeat: not compared here.)
    "maxmemory": [
        ("a", "SET", K(1), "online"),
        ("a", "CONFIG", "SET", "maxmemory", "1.5mb"),
        ("a", "CONFIG", "SET", "maxmemory", "-1"),
        ("a", "CONFIG", "SET", "maxmemory", "100mb"),
        ("a", "CONFIG", "GET", "maxmemory"),
        ("a", "CONFIG", "SET", "maxmemory", "1", "maxmemory", "2"),
        ("a", "CONFIG", "SET", "maxmemory-policy", "noeviction"),
        ("a", "CONFIG", "SET", "maxmemory", "1"),
        ("a", "SET", K(2), "online"),
        ("a", "SETEX", K(3), "30", "online"),
        ("a", "SET", K(1), '{"custom":1}'),
        ("a", "MSET", K(4), "online", K(5), "away"),
        ("a", "LPUSH", K(6), "x"),
        ("a", "GET", K(1)),
        ("a", "EXISTS", K(1), K(2)),
        ("a", "TTL", K(1)),
        ("a", "MULTI"),
        ("a", "GET", K(1)),
        ("a", "EXEC"),
        ("a", "DEL", K(1)),
        ("a", "EXISTS", K(1)),
        ("a", "CONFIG", "SET", "maxmemory", "0"),
        ("a", "SET", K(2), "online"),
        ("a", "GET", K(2)),
    ],
    "maxmemory reached after queueing": [
        ("a", "MULTI"),
        ("a", "SET", K(7), "online"),
        ("b", "CONFIG", "SET", "maxmemory", "1"),
        ("a", "EXEC"),
        ("a", "MULTI"),
        ("b", "CONFIG", "SET", "maxmemory", "0"),
        ("a", "GET", K(7)),
        ("a", "DEL", K(7)),
        ("b", "CONFIG", "SET", "maxmemory", "1"),
        ("a", "EXEC"),
        ("b", "CONFIG", "SET", "maxmemory", "0"),
        ("a", "GET", K(7)),
    ],
}

if __name__ == "__main__":
    sys.exit(run_all(SEQUENCES, "admin parity"))
