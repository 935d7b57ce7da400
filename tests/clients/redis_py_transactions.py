#!/usr/bin/env python3
"""Checks that redis-py 8's transactions work against presenced as they do against Redis.

Usage: redis_py_transactions.py --port N [--host H]

redis-py's default `pipeline()` wraps its commands in MULTI/EXEC; `transaction(func, *keys)`
WATCHes the keys, runs `func` and retries on a WatchError. Both are checked in RESP3 (redis-py
8's default) and RESP2, with presence commands and the drop-in key surface: results come back
in order, a runtime error inside the transaction does not stop the commands after it, a
queue-time error aborts the whole transaction, and a watched key changed by another client
makes EXEC fail with WatchError. Prints one line per failed check and a summary; exits 1 if
any check failed.
"""

import argparse
import sys

try:
    import redis
except ImportError:
    print("redis-py is not installed; run scripts/install-test-deps", file=sys.stderr)
    sys.exit(2)


failures = []
passed = 0


def check(name, condition, detail=""):
    global passed
    if condition:
        passed += 1
    else:
        failures.append(f"{name}: {detail}")
        print(f"FAIL {name}: {detail}")


def run(host, port, protocol):
    tag = f"resp{protocol}"
    r = redis.Redis(host=host, port=port, protocol=protocol, decode_responses=True)
    other = redis.Redis(host=host, port=port, protocol=protocol, decode_responses=True)

    # The default pipeline is a transaction: MULTI ... EXEC.
    pipe = r.pipeline()
    pipe.execute_command("HEARTBEAT", f"{tag}-1")
    pipe.set(f"user:{tag}-2:presence", "online", ex=30)
    pipe.get(f"user:{tag}-2:presence")
    pipe.execute_command("MSTATUS", f"{tag}-1", f"{tag}-3")
    results = pipe.execute()
    check(f"{tag} pipeline heartbeat", results[0] == 1, repr(results))
    check(f"{tag} pipeline set/get", results[1] is True and results[2] == "online", repr(results))
    check(f"{tag} pipeline mstatus", len(results[3]) == 2, repr(results))

    # A runtime error inside EXEC is returned in place; later commands still run.
    pipe = r.pipeline()
    pipe.execute_command("HEARTBEAT", f"{tag}-4", "TTL", "0")
    pipe.execute_command("HEARTBEAT", f"{tag}-5")
    results = pipe.execute(raise_on_error=False)
    check(
        f"{tag} runtime error in place",
        isinstance(results[0], redis.ResponseError) and results[1] == 1,
        repr(results),
    )

    # A queue-time error (an unknown command) aborts the whole transaction.
    pipe = r.pipeline()
    pipe.execute_command("HEARTBEAT", f"{tag}-6")
    pipe.execute_command("NOSUCHCOMMAND")
    try:
        pipe.execute()
        check(f"{tag} execabort", False, "no error")
    except redis.ResponseError as err:
        check(f"{tag} execabort", "EXECABORT" in str(err) or "unknown command" in str(err), str(err))
    status = r.execute_command("STATUS", f"{tag}-6")
    state = status["state"] if isinstance(status, dict) else status[0]
    check(f"{tag} aborted transaction changed nothing", state == "offline", repr(status))

    # transaction(): WATCH, then MULTI/EXEC; another client's change forces a retry.
    key = f"user:{tag}-7:presence"
    r.set(key, "away", ex=30)
    attempts = []

    def bump(p):
        attempts.append(1)
        value = p.get(key)
        if len(attempts) == 1:
            other.set(key, "busy", ex=30)  # a change between WATCH and EXEC
        p.multi()
        p.set(key, "online" if value else "away", ex=30)

    r.transaction(bump, key)
    check(f"{tag} transaction retried after a watched change", len(attempts) == 2, repr(attempts))
    check(f"{tag} transaction applied", r.get(key) == "online", r.get(key))

    # A watched user's heartbeat (a presence command, not a key command) also counts.
    with r.pipeline() as p:
        p.watch(key)
        other.execute_command("HEARTBEAT", f"{tag}-7")
        p.multi()
        p.get(key)
        try:
            p.execute()
            check(f"{tag} heartbeat breaks watch", False, "EXEC ran")
        except redis.WatchError:
            check(f"{tag} heartbeat breaks watch", True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    for protocol in (3, 2):
        run(args.host, args.port, protocol)
    print(f"redis_py_transactions: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
