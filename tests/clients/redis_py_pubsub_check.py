#!/usr/bin/env python3
"""Checks presence events with redis-py 8's pubsub(), over RESP3 (its default) and RESP2.

Usage: redis_py_pubsub_check.py --port N [--host H]

The server must run with --offline-grace 2 (the test suite starts it so). For each protocol,
with r.pubsub(), subscribe/psubscribe and get_message(timeout=...), it checks the events of:
a heartbeat (online, JSON payload), a TTL-1 heartbeat left silent (offline within TTL + 1 s,
same last-seen), DISCONNECT with and without a heartbeat inside the grace period, two devices
logging out one by one, an invisible user's heartbeats, the precedence of SETSTATUS over the
app's STATUS, a presence:* pattern subscription, and a 5,000-channel SUBSCRIBE receiving the
5,000 online events of one MHEARTBEAT.

"No event" is proven two ways: where time is what matters (the grace period), by waiting past
it with get_message; elsewhere by a marker, an operation that must publish, whose event must
be the next one (a user's events arrive in order). Every check uses its own users, so the
script also works against a server that already ran it. Prints one line per failed check, a
few timings and a summary line; exits 1 if any check failed.
"""

import argparse
import json
import sys
import time
import traceback
import uuid

try:
    import redis
except ImportError:
    print(
        "redis_py_pubsub_check: redis-py is not installed for this python3; run scripts/install-test-deps",
        file=sys.stderr,
    )
    sys.exit(2)

# The server's --offline-grace, as the test suite starts it.
GRACE_S = 2.0
# How long an event that must come may take: generous, as the suite runs tests in parallel on
# small machines. Timing checks measure the arrival and compare it with their own bound.
EVENT_TIMEOUT_S = 15.0
# Last-seen times are the server's wall clock; client and server share the machine.
CLOCK_SLACK_MS = 2_000
FRIENDS = 5_000


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
    return value.decode() if isinstance(value, bytes) else value


def next_message(p, timeout=EVENT_TIMEOUT_S):
    """The next pub/sub message of any type within `timeout` seconds, or None."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        message = p.get_message(timeout=remaining)
        if message is not None:
            return message


def messages_within(p, seconds):
    """Every message that arrives within `seconds` (an absence check waits the whole time)."""
    received = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        message = p.get_message(timeout=remaining)
        if message is not None:
            received.append(message)
    return received


def subscribe(c, p, channels, pattern=False):
    """(P)SUBSCRIBE in one call, then reads every confirmation, so that the server is known to
    have registered the subscriptions before the check publishes anything."""
    if pattern:
        p.psubscribe(*channels)
    else:
        p.subscribe(*channels)
    kind = "psubscribe" if pattern else "subscribe"
    confirmed = []
    while len(confirmed) < len(channels):
        message = next_message(p)
        if message is None:
            break
        confirmed.append(message)
    ok = c.check(
        f"{kind} of {len(channels)} confirmed, one {kind} message each, counting up",
        [m["type"] for m in confirmed] == [kind] * len(channels)
        and [text(m["channel"]) for m in confirmed] == list(channels)
        and [m["data"] for m in confirmed] == list(range(1, len(channels) + 1)),
        f"{len(confirmed)} confirmations; first {confirmed[:3]!r}",
    )
    return ok


def event(c, name, message, user, state, last_seen_ms=None, pattern=None):
    """Checks that `message` is the presence event of `user` with `state` (and `last_seen_ms`
    if given); returns its decoded payload, or None."""
    channel = f"presence:{user}"
    expected_type = "pmessage" if pattern else "message"
    if not c.check(
        f"{name}: a {expected_type} on {channel}",
        message is not None
        and message["type"] == expected_type
        and text(message["channel"]) == channel
        and (pattern is None or text(message["pattern"]) == pattern),
        "nothing arrived" if message is None else repr(message),
    ):
        return None
    raw = message["data"]
    try:
        payload = json.loads(raw)
    except ValueError as e:
        c.check(f"{name}: payload is JSON", False, f"{e}: {raw!r}")
        return None
    c.check(f"{name}: payload is one line", b"\n" not in raw and b"\r" not in raw, repr(raw))
    c.equal(f"{name}: payload keys", sorted(payload), ["last_seen_ms", "state", "user"])
    c.equal(f"{name}: payload user", payload.get("user"), str(user))
    c.equal(f"{name}: payload state", payload.get("state"), state)
    seen = payload.get("last_seen_ms")
    if last_seen_ms is None:
        c.check(
            f"{name}: last_seen_ms is an int near now",
            isinstance(seen, int) and abs(seen - now_ms()) < CLOCK_SLACK_MS + EVENT_TIMEOUT_S * 1000,
            repr(seen),
        )
    else:
        c.equal(f"{name}: last_seen_ms", seen, last_seen_ms)
    return payload


class Run:
    """The checks of one protocol: `r` sends commands, each check opens its own pubsub()."""

    def __init__(self, c, host, port, label, kwargs, resp):
        self.c = c
        self.label = label
        self.resp = resp
        self.r = redis.Redis(host=host, port=port, **kwargs)
        self.tag = f"{label}-{uuid.uuid4().hex[:8]}"

    def user(self, name):
        return f"py-{self.tag}-{name}"

    def cmd(self, *args):
        return self.r.execute_command(*args)

    def status(self, user):
        """STATUS as (state, last_seen_ms) whatever the protocol."""
        reply = self.cmd("STATUS", user)
        if self.resp == 3:
            return text(reply[b"state"]), reply[b"last_seen_ms"]
        return text(reply[0]), reply[1]

    def timing(self, what, seconds):
        print(f"[{self.label}] {what}: {seconds:.3f} s", flush=True)

    # 0. The protocol really used, by the commands connection and by the pubsub connection.
    def protocol(self):
        c = self.c
        info = text(self.cmd("CLIENT", "INFO"))
        c.check(f"CLIENT INFO says resp={self.resp}", f" resp={self.resp} " in info, info.strip())
        with self.r.pubsub() as p:
            subscribe(c, p, [f"presence:{self.user('proto')}"])
            c.equal("the pubsub connection's protocol", int(p.connection.protocol or 2), self.resp)
            clients = text(self.cmd("CLIENT", "LIST"))
            c.check(
                f"CLIENT LIST shows a redis-py subscriber with resp={self.resp}",
                any(
                    " sub=1 " in line and f" resp={self.resp} " in line and " lib-name=redis-py " in line
                    for line in clients.splitlines()
                ),
                clients,
            )

    # 1 and 2. HEARTBEAT TTL 1: online now, offline within TTL + 1 s, the same last-seen.
    def online_then_expiry(self):
        c = self.c
        u = self.user("ttl1")
        with self.r.pubsub() as p:
            subscribe(c, p, [f"presence:{u}"])
            before = now_ms()
            sent = time.monotonic()
            c.equal("HEARTBEAT u TTL 1 brings u online", self.cmd("HEARTBEAT", u, "TTL", 1), 1)
            online = event(c, "online after HEARTBEAT", next_message(p), u, "online")
            last_seen = online and online["last_seen_ms"]
            if online:
                c.check(
                    "online last_seen_ms is the heartbeat's time",
                    isinstance(last_seen, int) and before - CLOCK_SLACK_MS <= last_seen <= now_ms() + CLOCK_SLACK_MS,
                    f"{last_seen!r}, heartbeat sent at {before}",
                )
            message = next_message(p)
            after = time.monotonic() - sent
            event(c, "offline after TTL 1 and silence", message, u, "offline", last_seen)
            if message is not None:
                self.timing("offline event after a TTL-1 heartbeat", after)
                c.check(
                    "offline arrives after the TTL (>= 1 s) and within TTL + 1 s of the heartbeat",
                    0.95 <= after <= 2.0,
                    f"after {after:.3f} s",
                )
            c.equal("STATUS after the offline event", self.status(u), ("offline", last_seen))

    # 3. DISCONNECT and a heartbeat inside the grace: no event; DISCONNECT alone: offline when
    # the grace ends.
    def grace(self):
        c = self.c
        u = self.user("grace-back")
        with self.r.pubsub() as p:
            subscribe(c, p, [f"presence:{u}"])
            self.cmd("HEARTBEAT", u)
            online = event(c, "grace, back: online", next_message(p), u, "online")
            c.equal("grace, back: DISCONNECT starts a grace period", self.cmd("DISCONNECT", u), 1)
            early = messages_within(p, 0.5)
            c.equal("grace, back: HEARTBEAT 0.5 s into the grace finds u online", self.cmd("HEARTBEAT", u), 0)
            late = messages_within(p, 3.0)
            c.equal("grace, back: no event in the 3.5 s after DISCONNECT", early + late, [])
            state = self.status(u)
            c.check("grace, back: STATUS still online", state[0] == "online", repr(state))
            if online:
                c.check("grace, back: last-seen moved on", state[1] >= online["last_seen_ms"], repr(state))

        u = self.user("grace-gone")
        with self.r.pubsub() as p:
            subscribe(c, p, [f"presence:{u}"])
            self.cmd("HEARTBEAT", u)
            online = event(c, "grace, gone: online", next_message(p), u, "online")
            sent = time.monotonic()
            c.equal("grace, gone: DISCONNECT starts a grace period", self.cmd("DISCONNECT", u), 1)
            state = self.status(u)
            c.check("grace, gone: STATUS online during the grace", state[0] == "online", repr(state))
            message = next_message(p)
            after = time.monotonic() - sent
            event(c, "grace, gone: offline", message, u, "offline", online and online["last_seen_ms"])
            if message is not None:
                self.timing("offline event after DISCONNECT with a 2 s grace", after)
                c.check(
                    "grace, gone: offline arrives 2 s ± 1 s after DISCONNECT",
                    GRACE_S - 1.0 <= after <= GRACE_S + 1.0,
                    f"after {after:.3f} s",
                )
            c.equal(
                "grace, gone: STATUS offline with the heartbeat's last-seen",
                self.status(u),
                ("offline", online and online["last_seen_ms"]),
            )

    # 4. Two devices: the first logs out, no event; the second logs out, offline.
    def devices(self):
        c = self.c
        u = self.user("devices")
        with self.r.pubsub() as p:
            subscribe(c, p, [f"presence:{u}"])
            c.equal("HEARTBEAT u DEVICE a brings u online", self.cmd("HEARTBEAT", u, "DEVICE", "a"), 1)
            online = event(c, "devices: online", next_message(p), u, "online")
            c.equal("HEARTBEAT u DEVICE b: already online", self.cmd("HEARTBEAT", u, "DEVICE", "b"), 0)
            c.equal("OFFLINE u DEVICE a: a was live", self.cmd("OFFLINE", u, "DEVICE", "a"), 1)
            state = self.status(u)
            c.check("devices: STATUS online while b is live", state[0] == "online", repr(state))
            c.equal("OFFLINE u DEVICE b: b was live", self.cmd("OFFLINE", u, "DEVICE", "b"), 1)
            # The marker: if device b's heartbeat or a's logout had published anything, it would
            # come before this offline.
            offline = event(c, "devices: the next event is offline, after b's logout", next_message(p), u, "offline")
            if online and offline:
                c.check(
                    "devices: offline keeps the newest heartbeat's last-seen",
                    offline["last_seen_ms"] >= online["last_seen_ms"],
                    f"{offline['last_seen_ms']} < {online['last_seen_ms']}",
                )
                c.equal("devices: STATUS offline", self.status(u), ("offline", offline["last_seen_ms"]))

    # 5. Invisible: heartbeats publish nothing and STATUS reads offline.
    def invisible(self):
        c = self.c
        u = self.user("invisible")
        with self.r.pubsub() as p:
            subscribe(c, p, [f"presence:{u}"])
            c.equal("SETSTATUS u invisible (u never seen)", text(self.cmd("SETSTATUS", u, "invisible")), "OK")
            # Both devices report away, so the app status is away whichever was seen last.
            for args in ((), ("STATUS", "away"), ("DEVICE", "phone", "STATUS", "away"), ()):
                self.cmd("HEARTBEAT", u, *args)
            c.equal(
                "invisible: STATUS offline, with the last-seen of before (never seen)",
                self.status(u),
                ("offline", None),
            )
            reply = self.cmd("MSTATUS", u)[0]
            c.equal("invisible: MSTATUS reads offline too", text(reply[b"state"] if self.resp == 3 else reply[0]), "offline")
            c.equal("invisible: SETSTATUS u none", text(self.cmd("SETSTATUS", u, "none")), "OK")
            # The marker: clearing invisible while connected publishes the app status (away,
            # from the STATUS heartbeat); nothing may come before it.
            event(c, "invisible: the next event is away, after SETSTATUS none", next_message(p), u, "away")

        u = self.user("invisible-online")
        with self.r.pubsub() as p:
            subscribe(c, p, [f"presence:{u}"])
            self.cmd("HEARTBEAT", u)
            online = event(c, "invisible while online: online", next_message(p), u, "online")
            last_seen = online and online["last_seen_ms"]
            self.cmd("SETSTATUS", u, "invisible")
            event(c, "invisible while online: one offline event, like a logout", next_message(p), u, "offline", last_seen)
            for args in ((), ("STATUS", "busy"), ()):
                self.cmd("HEARTBEAT", u, *args)
            c.equal("invisible while online: STATUS offline, last-seen frozen", self.status(u), ("offline", last_seen))
            self.cmd("OFFLINE", u)
            self.cmd("HEARTBEAT", u)
            self.cmd("SETSTATUS", u, "none")
            state = self.status(u)
            c.check("invisible while online: STATUS online after SETSTATUS none", state[0] == "online", repr(state))
            event(
                c,
                "invisible while online: the next event is online, after SETSTATUS none",
                next_message(p),
                u,
                "online",
                state[1],
            )

    # 6. Precedence: manual override > app status > inferred online.
    def precedence(self):
        c = self.c
        u = self.user("precedence")
        with self.r.pubsub() as p:
            subscribe(c, p, [f"presence:{u}"])
            c.equal("HEARTBEAT u STATUS away brings u online", self.cmd("HEARTBEAT", u, "STATUS", "away"), 1)
            away = event(c, "precedence: away (not online first)", next_message(p), u, "away")
            self.cmd("SETSTATUS", u, "dnd")
            event(c, "precedence: dnd after SETSTATUS dnd", next_message(p), u, "dnd", away and away["last_seen_ms"])
            c.equal("precedence: HEARTBEAT STATUS busy under dnd", self.cmd("HEARTBEAT", u, "STATUS", "busy"), 0)
            state = self.status(u)
            c.check("precedence: STATUS still dnd", state[0] == "dnd", repr(state))
            self.cmd("SETSTATUS", u, "none")
            # The marker: busy must be the next event, so the busy heartbeat published nothing.
            event(c, "precedence: the next event is busy, after SETSTATUS none", next_message(p), u, "busy", state[1])
            c.equal("precedence: STATUS busy", self.status(u), ("busy", state[1]))

    # 7. PSUBSCRIBE presence:*: pmessages naming the pattern and the user's channel.
    def pattern(self):
        c = self.c
        u = self.user("pattern")
        with self.r.pubsub() as p:
            subscribe(c, p, ["presence:*"], pattern=True)
            self.cmd("HEARTBEAT", u)
            self.cmd("OFFLINE", u)
            # Other users (earlier checks, another protocol's run) may publish meanwhile.
            mine, others, wrong_pattern = [], 0, []
            deadline = time.monotonic() + EVENT_TIMEOUT_S
            while len(mine) < 2 and time.monotonic() < deadline:
                message = next_message(p, deadline - time.monotonic())
                if message is None:
                    break
                if message["type"] != "pmessage" or text(message["pattern"]) != "presence:*":
                    wrong_pattern.append(message)
                elif text(message["channel"]) == f"presence:{u}":
                    mine.append(message)
                else:
                    others += 1
            c.equal("pattern: every message is a pmessage of presence:*", wrong_pattern, [])
            c.equal("pattern: two events of u", len(mine), 2)
            online = event(c, "pattern: online", mine[0] if mine else None, u, "online", pattern="presence:*")
            event(
                c,
                "pattern: offline",
                mine[1] if len(mine) > 1 else None,
                u,
                "offline",
                online and online["last_seen_ms"],
                pattern="presence:*",
            )

    # 8. A friend list: 5,000 channels in one SUBSCRIBE, 5,000 online events from one MHEARTBEAT.
    def friend_list(self):
        c = self.c
        # Dense numeric IDs, as most apps have; made offline first so reruns behave the same.
        base = 700_000 if self.resp == 3 else 710_000
        users = [str(n) for n in range(base, base + FRIENDS)]
        pipe = self.r.pipeline(transaction=False)
        for u in users:
            pipe.execute_command("OFFLINE", u)
        pipe.execute()
        with self.r.pubsub() as p:
            started = time.monotonic()
            if not subscribe(c, p, [f"presence:{u}" for u in users]):
                return
            self.timing(f"SUBSCRIBE of {FRIENDS} channels, all confirmed", time.monotonic() - started)
            numsub = self.r.pubsub_numsub(f"presence:{users[0]}", f"presence:{users[-1]}")
            c.equal(
                "friend list: PUBSUB NUMSUB counts the subscriber",
                [(text(ch), n) for ch, n in numsub],
                [(f"presence:{users[0]}", 1), (f"presence:{users[-1]}", 1)],
            )
            started = time.monotonic()
            c.equal(f"MHEARTBEAT of {FRIENDS} users: all came online", self.cmd("MHEARTBEAT", *users), FRIENDS)
            received = {}
            bad = []
            deadline = time.monotonic() + 60.0
            while len(received) + len(bad) < FRIENDS and time.monotonic() < deadline:
                message = next_message(p, deadline - time.monotonic())
                if message is None:
                    break
                channel = text(message["channel"])
                try:
                    payload = json.loads(message["data"])
                except (ValueError, TypeError):
                    payload = None
                user = channel.removeprefix("presence:")
                if (
                    message["type"] == "message"
                    and isinstance(payload, dict)
                    and payload.get("user") == user
                    and payload.get("state") == "online"
                    and isinstance(payload.get("last_seen_ms"), int)
                    and user not in received
                ):
                    received[user] = payload["last_seen_ms"]
                else:
                    bad.append(message)
            self.timing(f"{len(received)} online events of one MHEARTBEAT received", time.monotonic() - started)
            extra = messages_within(p, 1.0)
            c.equal("friend list: every event well-formed, one per user", bad[:3], [])
            c.equal(f"friend list: one online event for each of the {FRIENDS} users", sorted(received), sorted(users))
            c.equal("friend list: nothing more in the next second", extra[:3], [])
            if received:
                spread = max(received.values()) - min(received.values())
                c.check("friend list: last-seen times within 5 s of each other", spread <= 5_000, f"{spread} ms")

    # 9. Sharded pub/sub (Redis 7): a cluster-aware client follows a user on the shard channel
    # presence:{<user>} with ssubscribe(); spublish() reaches shard subscribers only.
    def sharded(self):
        c = self.c
        user = f"py-shard-{self.resp}"
        self.cmd("OFFLINE", user)
        channel = f"presence:{{{user}}}"
        with self.r.pubsub() as p:
            p.ssubscribe(channel)
            deadline = time.monotonic() + EVENT_TIMEOUT_S
            confirmation = None
            while confirmation is None and time.monotonic() < deadline:
                confirmation = p.get_sharded_message(timeout=deadline - time.monotonic())
            c.equal(
                "ssubscribe confirmed",
                confirmation and (confirmation["type"], text(confirmation["channel"]), confirmation["data"]),
                ("ssubscribe", channel, 1),
            )
            c.equal("HEARTBEAT brings the user online", self.cmd("HEARTBEAT", user, "TTL", "30"), 1)
            event = None
            deadline = time.monotonic() + EVENT_TIMEOUT_S
            while event is None and time.monotonic() < deadline:
                event = p.get_sharded_message(timeout=deadline - time.monotonic())
            payload = json.loads(event["data"]) if event else {}
            c.equal(
                "the online event arrives as an smessage on presence:{<user>}",
                event and (event["type"], text(event["channel"]), payload.get("user"), payload.get("state")),
                ("smessage", channel, user, "online"),
            )
            c.equal("SPUBLISH counts the shard subscriber", self.r.spublish(channel, "hello"), 1)
            c.equal("PUBLISH to the shard channel reaches no shard subscriber", self.r.publish(channel, "x"), 0)
            c.equal(
                "PUBSUB SHARDNUMSUB",
                [(text(ch), n) for ch, n in self.r.pubsub_shardnumsub(channel)],
                [(channel, 1)],
            )

    def run(self):
        for check in (
            self.protocol,
            self.online_then_expiry,
            self.grace,
            self.devices,
            self.invisible,
            self.precedence,
            self.pattern,
            self.friend_list,
            self.sharded,
        ):
            self.c.section = f"{self.label} {check.__name__}"
            started = time.monotonic()
            try:
                check()
            except Exception:  # A crash is one failed check; the others still run.
                self.c.check("runs without an exception", False, traceback.format_exc())
            self.timing(f"{check.__name__} took", time.monotonic() - started)
        self.r.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()

    c = Checks()
    c.section = "setup"
    major = int(redis.__version__.split(".")[0])
    if not c.check("redis-py is version 8", major == 8, f"redis-py {redis.__version__}; run scripts/install-test-deps"):
        print(f"redis_py_pubsub_check: 0 checks passed, {len(c.failed)} failed")
        return 1
    probe = redis.Redis(host=args.host, port=args.port, protocol=2)
    grace = probe.config_get("offline-grace").get("offline-grace")
    probe.close()
    # The grace checks below time it anyway; CONFIG GET only catches a wrongly started server
    # early, where the server reports the parameter.
    if grace is None:
        print("NOTE CONFIG GET offline-grace returns nothing; assuming --offline-grace 2", flush=True)
    elif not c.equal("the server runs with --offline-grace 2", grace, "2"):
        print(f"redis_py_pubsub_check: {c.passed} checks passed, {len(c.failed)} failed")
        return 1
    started = time.monotonic()
    protocols = [("resp3", {}, 3), ("resp2", {"protocol": 2}, 2)]
    for label, kwargs, resp in protocols:
        try:
            Run(c, args.host, args.port, label, kwargs, resp).run()
        except Exception:
            c.section = label
            c.check("runs without an exception", False, traceback.format_exc())
    print(
        f"redis_py_pubsub_check: {c.passed} checks passed, {len(c.failed)} failed "
        f"(redis-py {redis.__version__}, RESP3 and RESP2, {time.monotonic() - started:.1f} s)"
    )
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
