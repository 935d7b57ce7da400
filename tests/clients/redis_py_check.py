#!/usr/bin/env python3
"""Checks presenced with redis-py 8, the way applications use it.

Usage: redis_py_check.py --port N [--host H]

Connects in four configurations — redis-py 8's default (RESP3, negotiated with HELLO 3),
protocol=2, decode_responses=True (RESP3), and protocol=2 with decode_responses=True — and in
each one runs every presence command through execute_command, the Redis commands redis-py
calls for itself (PING, ECHO, INFO, DBSIZE, CLIENT SETNAME/GETNAME, CONFIG GET, TIME), a
pipeline of 1,000 heartbeats, Redis's error texts, and a TTL-1 heartbeat expiring.

The script is meant for a server it has to itself (the test suite starts one per test): it
compares INFO counters before and after its own commands. Prints one line per failed check and
a summary line; exits 1 if any check failed.
"""

import argparse
import re
import sys
import time
import traceback
import uuid

try:
    import redis
except ImportError:
    print(
        "redis_py_check: redis-py is not installed for this python3; run scripts/install-test-deps",
        file=sys.stderr,
    )
    sys.exit(2)

# Last-seen times are the server's wall clock; client and server share the machine, so this
# is only slack for scheduling.
CLOCK_SLACK_MS = 2_000


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []
        self.section = ""

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            message = f"[{self.section}] {name}"
            if detail:
                message += f": {detail}"
            self.failed.append(message)
            print(f"FAIL {message}", flush=True)
        return ok

    def equal(self, name, actual, expected):
        return self.check(name, actual == expected, f"expected {expected!r}, got {actual!r}")


def now_ms():
    return int(time.time() * 1000)


def text(value):
    """A reply string as str, whether redis-py decoded it or not."""
    return value.decode() if isinstance(value, bytes) else value


def run_config(c, port, host, label, kwargs, expect_resp):
    c.section = label
    r = redis.Redis(host=host, port=port, **kwargs)
    decoded = kwargs.get("decode_responses", False)

    def s(value):
        """The expected form of a string reply in this configuration."""
        return value if decoded else value.encode()

    # The protocol really negotiated, as the server sees it (redis-py 8 sends HELLO 3 unless
    # told protocol=2), and redis-py's own idea of it.
    client_info = text(r.execute_command("CLIENT", "INFO"))
    c.check(
        f"CLIENT INFO says resp={expect_resp}",
        f" resp={expect_resp} " in client_info,
        client_info.strip(),
    )
    c.check(
        "CLIENT INFO shows redis-py's CLIENT SETINFO lib-name",
        "lib-name=redis-py" in client_info,
        client_info.strip(),
    )
    connection = r.connection_pool.get_connection()
    try:
        c.equal("redis-py connection protocol", int(connection.protocol or 2), expect_resp)
    finally:
        r.connection_pool.release(connection)

    def status(state, last_seen):
        if expect_resp == 3:
            return {s("state"): s(state), s("last_seen_ms"): last_seen}
        return [s(state), last_seen]

    def last_seen_of(reply):
        return reply[s("last_seen_ms")] if expect_resp == 3 else reply[1]

    # HEARTBEAT: 42 is made offline first so the script gives the same answers on every run.
    r.execute_command("OFFLINE", 42)
    before_ms = now_ms()
    c.equal("HEARTBEAT 42 brings 42 online", r.execute_command("HEARTBEAT", 42), 1)
    c.equal("HEARTBEAT 42 TTL 5 of an online user", r.execute_command("HEARTBEAT", 42, "TTL", 5), 0)
    after_ms = now_ms()
    user_uuid = str(uuid.uuid4())
    c.equal("HEARTBEAT <uuid>", r.execute_command("HEARTBEAT", user_uuid), 1)
    c.equal("HEARTBEAT <uuid> again", r.execute_command("HEARTBEAT", user_uuid), 0)
    for user in (1, 2, 3):
        r.execute_command("OFFLINE", user)
    c.equal("MHEARTBEAT 1 2 3", r.execute_command("MHEARTBEAT", 1, 2, 3), 3)
    c.equal("MHEARTBEAT 1 2 3 again", r.execute_command("MHEARTBEAT", 1, 2, 3), 0)

    # STATUS and MSTATUS.
    reply = r.execute_command("STATUS", 42)
    last_seen_42 = last_seen_of(reply) if isinstance(reply, (dict, list)) else None
    c.check(
        "STATUS 42 last-seen is an int near now",
        isinstance(last_seen_42, int)
        and before_ms - CLOCK_SLACK_MS <= last_seen_42 <= after_ms + CLOCK_SLACK_MS,
        f"{last_seen_42!r} not within [{before_ms}, {after_ms}] ± {CLOCK_SLACK_MS} ms",
    )
    c.equal("STATUS 42", reply, status("online", last_seen_42))
    never_seen = f"never-seen-{uuid.uuid4()}"
    c.equal("STATUS of a never-seen id", r.execute_command("STATUS", never_seen), status("offline", None))
    reply = r.execute_command("MSTATUS", 42, 43, user_uuid)
    uuid_seen = last_seen_of(reply[2]) if isinstance(reply, list) and len(reply) == 3 else None
    c.check("MSTATUS <uuid> last-seen is an int", isinstance(uuid_seen, int), repr(reply))
    c.equal(
        "MSTATUS 42 43 <uuid>",
        reply,
        [status("online", last_seen_42), status("offline", None), status("online", uuid_seen)],
    )

    # OFFLINE keeps the last-seen of the last heartbeat.
    c.equal("OFFLINE 42", r.execute_command("OFFLINE", 42), 1)
    c.equal("OFFLINE 42 again", r.execute_command("OFFLINE", 42), 0)
    c.equal("STATUS 42 after OFFLINE", r.execute_command("STATUS", 42), status("offline", last_seen_42))

    # The Redis commands, through redis-py's own methods and through execute_command.
    c.equal("PING", r.ping(), True)
    c.equal("PING through execute_command", r.execute_command("PING"), True)
    c.equal("ECHO of non-ASCII text", r.echo("héllo ☃"), "héllo ☃" if decoded else "héllo ☃".encode())
    info = r.info()
    c.check("INFO is parsed into a dict", isinstance(info, dict), repr(type(info)))
    run_id = str(info.get("run_id", ""))
    c.check("INFO run_id is 40 hex characters", re.fullmatch(r"[0-9a-f]{40}", run_id) is not None, run_id)
    c.equal("INFO redis_version", str(info.get("redis_version")), "7.2.0")
    c.equal("INFO tcp_port", info.get("tcp_port"), port)
    for field in (
        "online_users",
        "tracked_users",
        "side_table_users",
        "dense_capacity",
        "shards",
        "default_ttl_s",
        "heartbeats_total",
        "status_lookups_total",
        "logouts_total",
        "users_expired_total",
    ):
        c.check(f"INFO presence field {field} is an int", isinstance(info.get(field), int), repr(info.get(field)))
    presence = r.info("presence")
    c.check(
        "INFO presence has only the presence section",
        isinstance(presence, dict) and "online_users" in presence and "run_id" not in presence,
        repr(presence),
    )
    dbsize = r.dbsize()
    c.check("DBSIZE counts the online users 1, 2, 3 and <uuid>", isinstance(dbsize, int) and dbsize >= 4, repr(dbsize))
    name = f"presenced-check-{label}"
    c.equal("CLIENT SETNAME", r.client_setname(name), True)
    c.equal("CLIENT GETNAME", text(r.client_getname()), name)
    c.equal("CLIENT GETNAME through execute_command", r.execute_command("CLIENT", "GETNAME"), s(name))
    maxclients = str(info.get("maxclients"))
    # redis-py's config_get turns names and values into str whatever decode_responses says.
    c.equal("CONFIG GET maxclients", r.config_get("maxclients"), {"maxclients": maxclients})
    raw_config = r.execute_command("CONFIG", "GET", "maxclients")
    if expect_resp == 3:
        c.equal("CONFIG GET is a map in RESP3", raw_config, {s("maxclients"): s(maxclients)})
    else:
        c.equal("CONFIG GET is a flat array in RESP2", raw_config, [s("maxclients"), s(maxclients)])
    seconds, micros = r.time()
    c.check("TIME is near the client's clock", abs(seconds + micros / 1e6 - time.time()) < CLOCK_SLACK_MS / 1000)
    c.check("TIME microseconds are below 1,000,000", 0 <= micros < 1_000_000, repr(micros))

    # A pipeline of 1,000 heartbeats: one reply each, in order, each counted by INFO.
    base = {"resp3": 100_000, "resp2": 101_000, "resp3-decoded": 102_000, "resp2-decoded": 103_000}[label]
    users = list(range(base, base + 1000))
    pipe = r.pipeline(transaction=False)
    for user in users:
        pipe.execute_command("OFFLINE", user)
    pipe.execute()
    heartbeats_before = r.info("presence")["heartbeats_total"]
    pipe = r.pipeline(transaction=False)
    for user in users:
        pipe.execute_command("HEARTBEAT", user)
    replies = pipe.execute()
    heartbeats_after = r.info("presence")["heartbeats_total"]
    c.equal("pipeline of 1,000 HEARTBEATs: each brought its user online", replies, [1] * 1000)
    c.equal("INFO heartbeats_total grew by the pipeline's 1,000", heartbeats_after - heartbeats_before, 1000)
    states = r.execute_command("MSTATUS", *users)
    online = [st for st in states if (st[s("state")] if expect_resp == 3 else st[0]) == s("online")]
    c.equal("MSTATUS of the pipeline's 1,000 users: all online", len(online), 1000)

    # Errors read as Redis's and leave the connection usable.
    try:
        r.execute_command("NOSUCHCMD", "a", "b")
        c.check("unknown command raises redis.ResponseError", False, "no exception")
    except redis.ResponseError as e:
        # redis-py strips the leading "ERR " code.
        c.equal("unknown command error text", str(e), "unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' ")
    try:
        r.execute_command("HEARTBEAT")
        c.check("HEARTBEAT without a user raises redis.ResponseError", False, "no exception")
    except redis.ResponseError as e:
        c.equal("wrong arity error text", str(e), "wrong number of arguments for 'heartbeat' command")
    try:
        r.execute_command("HEARTBEAT", 42, "TTL", 0)
        c.check("HEARTBEAT TTL 0 raises redis.ResponseError", False, "no exception")
    except redis.ResponseError as e:
        c.equal("invalid TTL error text", str(e), "invalid TTL '0': must be an integer from 1 to 86400 seconds")
    pipe = r.pipeline(transaction=False)
    pipe.execute_command("HEARTBEAT", 7)
    pipe.execute_command("NOSUCHCMD")
    pipe.execute_command("ECHO", "after")
    replies = pipe.execute(raise_on_error=False)
    c.check(
        "an error in a pipeline is one ResponseError among the replies",
        len(replies) == 3
        and replies[0] in (0, 1)
        and isinstance(replies[1], redis.ResponseError)
        and replies[2] == s("after"),
        repr(replies),
    )
    c.equal("PING after errors", r.ping(), True)

    # TTL 1: online now, offline one second later (not before), the last-seen kept.
    user = f"ttl-one-{uuid.uuid4()}"
    expired_before = r.info("presence")["users_expired_total"]
    sent = time.monotonic()
    c.equal("HEARTBEAT <user> TTL 1", r.execute_command("HEARTBEAT", user, "TTL", 1), 1)
    reply = r.execute_command("STATUS", user)
    last_seen = last_seen_of(reply)
    c.equal("STATUS right after HEARTBEAT TTL 1", reply, status("online", last_seen))
    offline_after = None
    while time.monotonic() - sent < 4.0:
        reply = r.execute_command("STATUS", user)
        if reply != status("online", last_seen):
            offline_after = time.monotonic() - sent
            break
        time.sleep(0.02)
    c.check(
        "a TTL-1 user goes offline between 0.9 s and 3 s after the heartbeat",
        offline_after is not None and 0.9 <= offline_after <= 3.0,
        f"offline after {offline_after!r} s",
    )
    if offline_after is not None:
        print(f"[{label}] the TTL-1 user read as offline {offline_after:.3f} s after its heartbeat")
    c.equal("STATUS after expiry keeps the last-seen", reply, status("offline", last_seen))
    deadline = time.monotonic() + 2.0
    expired_after = expired_before
    while time.monotonic() < deadline and expired_after == expired_before:
        expired_after = r.info("presence")["users_expired_total"]
        time.sleep(0.05)
    c.check(
        "INFO users_expired_total counts the expiry within 2 s",
        expired_after > expired_before,
        f"{expired_before} -> {expired_after}",
    )
    r.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()

    c = Checks()
    c.section = "setup"
    major = int(redis.__version__.split(".")[0])
    if not c.check("redis-py is version 8", major == 8, f"redis-py {redis.__version__}; run scripts/install-test-deps"):
        print(f"redis_py_check: 0 checks passed, {len(c.failed)} failed")
        return 1
    configs = [
        ("resp3", {}, 3),
        ("resp2", {"protocol": 2}, 2),
        ("resp3-decoded", {"decode_responses": True}, 3),
        ("resp2-decoded", {"protocol": 2, "decode_responses": True}, 2),
    ]
    for label, kwargs, resp in configs:
        try:
            run_config(c, args.port, args.host, label, kwargs, resp)
        except Exception:  # A crash is one failed check; the other configurations still run.
            c.section = label
            c.check("runs without an exception", False, traceback.format_exc())
    print(
        f"redis_py_check: {c.passed} checks passed, {len(c.failed)} failed "
        f"(redis-py {redis.__version__}, {len(configs)} configurations)"
    )
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
