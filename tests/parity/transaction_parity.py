#!/usr/bin/env python3
"""Transaction parity: the same MULTI/EXEC/DISCARD/WATCH/UNWATCH sequences sent to a real
redis-server and to presenced, every reply compared byte for byte.

Usage: transaction_parity.py --presenced-port N [--host H] [--redis-server PATH]

Starts its own redis-server (as presence_app_parity.py does) and connects to a running
presenced. Each sequence runs on three connections per server (`a`, `b` and `c`, so that
`b` can change a key `a` watches), in RESP2 and again in RESP3 (after `HELLO 3`, whose own reply
differs by design and is not compared). Only presence keys of the default --key-pattern are
used. A step `a!` sends without reading (CLIENT REPLY OFF), a step `a?` only reads the next
reply or pushed message (a second SSUBSCRIBE confirmation, an smessage). Prints one line per
difference and a summary (`transaction parity: N replies
identical`); exits 1 on any difference, 2 if redis-py or redis-server is missing.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from presence_app_parity import RawConnection, RedisServer
except ImportError as err:  # redis-py missing: the other script says so on import
    print(f"transaction_parity: {err}", file=sys.stderr)
    sys.exit(2)

K = "user:{}:presence".format

SEQUENCES = {
    "queue and run": [
        ("a", "MULTI"),
        ("a", "SET", K(1), "online", "EX", "30"),
        ("a", "GET", K(1)),
        ("a", "EXISTS", K(1), K(2)),
        ("a", "SET", K(2), '{"device":"phone"}'),
        ("a", "MGET", K(1), K(2), K(3)),
        ("a", "DEL", K(1)),
        ("a", "EXEC"),
        ("a", "GET", K(1)),
    ],
    "misplaced commands": [
        ("a", "EXEC"),
        ("a", "DISCARD"),
        ("a", "MULTI"),
        ("a", "MULTI"),
        ("a", "WATCH", K(3)),
        ("a", "SET", K(3), "away"),
        ("a", "EXEC"),
        ("a", "GET", K(3)),
    ],
    "queue-time errors abort": [
        ("a", "MULTI"),
        ("a", "SET", K(4), "online"),
        ("a", "NOSUCHCOMMAND", "x"),
        ("a", "EXEC"),
        ("a", "GET", K(4)),
        ("a", "MULTI"),
        ("a", "GET"),
        ("a", "SET", K(4), "online"),
        ("a", "EXEC"),
        ("a", "GET", K(4)),
    ],
    "runtime errors do not stop the rest": [
        ("a", "MULTI"),
        ("a", "SET", K(5), "online", "EX", "0"),
        ("a", "SET", K(5), "online", "EX", "30", "NX", "XX"),
        ("a", "EXPIRE", K(5), "abc"),
        ("a", "SET", K(5), "busy"),
        ("a", "GET", K(5)),
        ("a", "EXEC"),
    ],
    "discard and reset": [
        ("a", "MULTI"),
        ("a", "SET", K(6), "online"),
        ("a", "DISCARD"),
        ("a", "GET", K(6)),
        ("a", "MULTI"),
        ("a", "SET", K(6), "online"),
        ("a", "RESET"),
        ("a", "EXEC"),
        ("a", "GET", K(6)),
    ],
    "watch broken by SET": [
        ("a", "SET", K(7), "online", "EX", "30"),
        ("a", "WATCH", K(7)),
        ("b", "SET", K(7), "away", "EX", "30"),
        ("a", "MULTI"),
        ("a", "GET", K(7)),
        ("a", "EXEC"),
    ],
    "watch broken by DEL, EXPIRE, PERSIST": [
        ("a", "SET", K(8), "online", "EX", "30"),
        ("a", "WATCH", K(8)),
        ("b", "EXPIRE", K(8), "100"),
        ("a", "MULTI"),
        ("a", "EXEC"),
        ("a", "WATCH", K(8)),
        ("b", "PERSIST", K(8)),
        ("a", "MULTI"),
        ("a", "EXEC"),
        ("a", "WATCH", K(8)),
        ("b", "DEL", K(8)),
        ("a", "MULTI"),
        ("a", "SET", K(8), "online"),
        ("a", "EXEC"),
        ("a", "GET", K(8)),
    ],
    "watch of a missing key broken by its creation": [
        ("a", "WATCH", K(9), K(10)),
        ("b", "SET", K(10), "online"),
        ("a", "MULTI"),
        ("a", "SET", K(9), "online"),
        ("a", "EXEC"),
        ("a", "GET", K(9)),
    ],
    "untouched and forgotten watches": [
        ("a", "SET", K(11), "online"),
        ("a", "WATCH", K(11)),
        ("a", "WATCH", K(11)),
        ("b", "GET", K(11)),
        ("a", "MULTI"),
        ("a", "SET", K(11), "away"),
        ("a", "EXEC"),
        ("a", "WATCH", K(11)),
        ("a", "UNWATCH"),
        ("b", "SET", K(11), "busy"),
        ("a", "MULTI"),
        ("a", "GET", K(11)),
        ("a", "EXEC"),
        ("a", "WATCH", K(11)),
        ("a", "MULTI"),
        ("a", "DISCARD"),
        ("b", "SET", K(11), "online"),
        ("a", "MULTI"),
        ("a", "EXEC"),
    ],
    "watch broken by FLUSHALL": [
        ("a", "SET", K(12), "online"),
        ("a", "WATCH", K(12)),
        ("b", "FLUSHALL"),
        ("a", "MULTI"),
        ("a", "SET", K(12), "away"),
        ("a", "EXEC"),
        ("a", "GET", K(12)),
        ("a", "WATCH", K(13)),
        ("b", "FLUSHALL"),
        ("a", "MULTI"),
        ("a", "SET", K(13), "away"),
        ("a", "EXEC"),
    ],
}


def send_only(conn, args):
    """Sends a request whose reply the server is not expected to send (CLIENT REPLY)."""
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    conn.sock.sendall(out)


def run_sequence(conns, steps, report, normalise=None):
    """Runs the steps on both sides. `who` is `a` or `b`; `a!` expects no reply; `a~` reads the
    reply without comparing it (a HELLO, whose server name differs by design). `normalise`, if
    given, maps (args, raw reply) to what is compared (to leave out ids, times, addresses)."""
    identical = 0
    for step in steps:
        who, args = step[0], step[1:]
        if who.endswith("!"):
            # A request with no reply: sent to both; the next reply read shows what was kept.
            for side in conns:
                send_only(conns[side][who[0]], args)
            continue
        if who.endswith("~"):
            for side in conns:
                conns[side][who[0]].call(*args)
            continue
        if who.endswith("?"):
            replies = {side: conns[side][who[0]].read() for side in conns}
        else:
            replies = {side: conns[side][who].call(*args) for side in conns}
        if normalise is not None:
            replies = {side: normalise(args, reply) for side, reply in replies.items()}
        if replies["redis"] == replies["presenced"]:
            identical += 1
        else:
            report(f"{' '.join(args)} on {who}: redis {replies['redis']!r}, "
                   f"presenced {replies['presenced']!r}")
    return identical


def main():
    return run_all(SEQUENCES, "transaction parity")


def run_all(sequences, title, normalise=None):
    """Runs `sequences` against both servers in RESP2 and RESP3; the exit status."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--presenced-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis-server", default="redis-server")
    args = parser.parse_args()
    try:
        redis_server = RedisServer(args.redis_server)
    except (OSError, RuntimeError) as err:
        print(f"transaction_parity: cannot start redis-server: {err}", file=sys.stderr)
        return 2
    differences = []
    identical = 0
    try:
        ports = {"redis": redis_server.port, "presenced": args.presenced_port}
        for protocol in (2, 3):
            for name, steps in sequences.items():
                conns = {
                    side: {who: RawConnection(port, args.host) for who in "abc"}
                    for side, port in ports.items()
                }
                for side in conns:
                    conns[side]["a"].call("FLUSHALL")
                    if protocol == 3:
                        for who in "abc":
                            conns[side][who].call("HELLO", "3")

                def report(line, name=name, protocol=protocol):
                    differences.append(line)
                    print(f"DIFF resp{protocol} [{name}] {line}")

                identical += run_sequence(conns, steps, report, normalise)
                for side in conns:
                    for conn in conns[side].values():
                        conn.close()
    finally:
        redis_server.stop()
    print(f"{title}: {identical} replies identical, {len(differences)} different")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
