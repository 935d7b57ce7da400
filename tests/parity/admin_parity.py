#!/usr/bin/env python3
"""Admin-command parity: FLUSHDB, CLIENT REPLY, CLIENT KILL filters, CLIENT NO-EVICT, MEMORY
USAGE, the EXPIRE family's bounds, maxmemory (CONFIG SET, OOM refusals, transactions past the
limit), SLOWLOG and INFO commandstats, sent to a real redis-server and to presenced, every reply
compared byte for byte (the runner of transaction_parity.py: three connections per server, RESP2
and RESP3; a step marked `a!` expects no reply, and the next reply read shows none came; `a~` is
sent and its reply not compared). SLOWLOG GET replies are compared with their ids made
relative, times, durations and addresses blanked; INFO commandstats with its times left out and
its lines sorted (Redis lists them in hash order).

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
    "slowlog": [
        ("a", "CONFIG", "SET", "slowlog-log-slower-than", "0"),
        ("a", "CONFIG", "GET", "slowlog-log-slower-than"),
        ("a", "CONFIG", "GET", "slowlog-max-len"),
        ("a", "SLOWLOG", "RESET"),
        ("a", "SET", K(1), "online"),
        ("a", "GET", K(1)),
        ("a", "CLIENT", "SETNAME", "parity"),
        ("a", "ECHO", "x" * 200),
        ("a", "MGET", *[K(i) for i in range(40)]),
        ("a", "MULTI"),
        ("a", "SET", K(2), "away"),
        ("a", "GET", K(2)),
        ("a", "EXEC"),
        ("a", "MULTI"),
        ("a", "GET"),
        ("a", "EXEC"),
        ("a", "NOSUCH", "x"),
        ("a", "AUTH", "pw"),
        ("a", "AUTH", "default", "pw"),
        ("a", "AUTH", "a", "b", "c"),
        ("a~", "HELLO", "2", "AUTH", "default", "pw", "SETNAME", "hello"),
        ("b", "PING"),
        ("a", "SLOWLOG", "LEN"),
        ("a", "SLOWLOG", "GET"),
        ("a", "SLOWLOG", "GET", "3"),
        ("a", "SLOWLOG", "GET", "0"),
        ("a", "SLOWLOG", "GET", "-1"),
        ("a", "SLOWLOG", "GET", "-2"),
        ("a", "SLOWLOG", "GET", "x"),
        ("a", "SLOWLOG", "GET", "1", "2"),
        ("a", "slowlog", "Get", "1", "2"),
        ("a", "SLOWLOG", "LEN", "x"),
        ("a", "SLOWLOG", "RESET", "x"),
        ("a", "SLOWLOG"),
        ("a", "SLOWLOG", "NOPE"),
        ("a", "SLOWLOG", "HELP"),
        ("a", "CONFIG", "SET", "slowlog-max-len", "2"),
        ("a", "SLOWLOG", "LEN"),
        ("a", "SLOWLOG", "GET", "-1"),
        ("a", "CONFIG", "SET", "slowlog-max-len", "x"),
        ("a", "CONFIG", "SET", "SLOWLOG-MAX-LEN", "05"),
        # -1 is refused by both, with Redis's range (0 to LONG_MAX) and presenced's (0 to
        # 100000) in the text: not compared.
        ("a", "CONFIG", "SET", "slowlog-log-slower-than", "-2"),
        ("a", "CONFIG", "SET", "slowlog-log-slower-than", "x"),
        ("a", "CONFIG", "SET", "slowlog-max-len", "3", "Slowlog-Max-Len", "4"),
        ("a", "CONFIG", "SET", "slowlog-max-len", "x", "nosuch", "4"),
        ("a", "CONFIG", "GET", "slowlog-max-len"),
        ("a", "CONFIG", "SET", "slowlog-log-slower-than", "-1"),
        ("a", "PING"),
        ("a", "SLOWLOG", "LEN"),
        ("a", "SLOWLOG", "RESET"),
        ("a", "SLOWLOG", "LEN"),
        ("a", "CONFIG", "SET", "slowlog-log-slower-than", "10000", "slowlog-max-len", "128"),
        ("a", "PING"),
        ("a", "SLOWLOG", "LEN"),
    ],
    "commandstats": [
        ("a", "CONFIG", "RESETSTAT"),
        ("a", "INFO", "commandstats"),
        ("a", "SET", K(1), "online"),
        ("a", "SET", K(1), "online", "EX", "0"),
        ("a", "SET", K(1)),
        ("a", "GET", K(1)),
        ("a", "NOSUCH"),
        ("a", "CLIENT"),
        ("a", "CLIENT", "NOPE"),
        ("a", "CLIENT", "GETNAME", "x"),
        ("a", "CLIENT", "GETNAME"),
        ("a", "MULTI"),
        ("a", "SET", K(2), "away", "EX", "0"),
        ("a", "GET", K(2)),
        ("a", "EXEC"),
        ("a", "MULTI"),
        ("a", "GET"),
        ("a", "EXEC"),
        ("a", "EXEC"),
        ("a", "MULTI"),
        ("a", "WATCH", K(1)),
        ("a", "SAVE"),
        ("a", "DISCARD"),
        ("a", "SLOWLOG", "LEN"),
        ("a", "SLOWLOG", "LEN", "x"),
        ("b", "SUBSCRIBE", "parity"),
        ("b", "GET", K(1)),
        ("b", "PING"),
        ("a", "INFO", "commandstats"),
        ("a", "INFO", "COMMANDSTATS"),
        ("a", "CONFIG", "RESETSTAT"),
        ("a", "INFO", "commandstats"),
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

def parse_reply(buf, at=0):
    """One RESP2/RESP3 value from `buf` at `at`: (value, where it ends). Aggregates are lists
    (maps flattened, as RESP2 sends them), strings bytes, errors and simple strings tagged."""
    end = buf.index(b"\r\n", at)
    kind, header, after = buf[at:at + 1], buf[at + 1:end], end + 2
    if kind in (b"$", b"=", b"!"):
        if header == b"-1":
            return None, after
        size = int(header)
        return buf[after:after + size], after + size + 2
    if kind in (b"*", b"~", b">", b"%"):
        if header == b"-1":
            return None, after
        items = []
        for _ in range(int(header) * (2 if kind == b"%" else 1)):
            item, after = parse_reply(buf, after)
            items.append(item)
        return items, after
    if kind == b":":
        return int(header), after
    return (kind, header), after


def slowlog_entries(entries):
    """SLOWLOG GET entries with what differs by nature blanked: ids made relative to the
    newest, times, durations and addresses zeroed; arguments and client names kept."""
    if not isinstance(entries, list):
        return entries
    newest = entries[0][0] if entries else 0
    return [[newest - e[0], 0, 0, e[3], b"ADDR", e[5]] for e in entries]


def commandstats(text):
    """INFO commandstats text without the times, lines sorted."""
    if not isinstance(text, bytes):
        return text
    text = text[4:] if text.startswith(b"txt:") else text
    lines = []
    for line in text.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.startswith("cmdstat_"):
            fields = dict(f.split("=") for f in value.split(","))
            line = f"{name}:" + ",".join(
                f"{k}={fields[k]}" for k in ("calls", "rejected_calls", "failed_calls"))
        lines.append(line)
    return sorted(lines)


def normalise(args, reply):
    """What is compared of a reply: itself, but for SLOWLOG GET and INFO commandstats."""
    words = [str(a).lower() for a in args[:2]]
    if words == ["slowlog", "get"]:
        return slowlog_entries(parse_reply(reply)[0])
    if words == ["info", "commandstats"]:
        return commandstats(parse_reply(reply)[0])
    return reply


if __name__ == "__main__":
    sys.exit(run_all(SEQUENCES, "admin parity", normalise))
