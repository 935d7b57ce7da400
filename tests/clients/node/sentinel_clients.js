#!/usr/bin/env node
// ioredis 5 through real Redis Sentinel against presenced.
//
// Usage: node sentinel_clients.js --sentinels 127.0.0.1:P1,127.0.0.1:P2,... --name mymaster
//        [--leader-pid PID --leader 127.0.0.1:PORT]
//
// Run by tests/failover/sentinel_clients.py --client ioredis, which starts a presenced leader,
// two followers and three redis-sentinel processes, waits until the sentinels see both
// followers and each other, and then runs this script with the sentinels' addresses and the
// leader's pid and address. This script does the failover itself: it kills the leader with
// process.kill(PID, 'SIGKILL') when its checks reach that point (without --leader-pid the
// failover checks are skipped).
//
// Checks, each printed as it passes:
// - role 'master': on the leader (ROLE); HEARTBEAT, SET ... EX, MSTATUS through call();
// - role 'slave': on a follower (ROLE); reads the replicated writes (polled, bounded);
//   HEARTBEAT and SET get READONLY;
// - a subscriber with role 'slave' receives the offline event on presence:<user> after an
//   OFFLINE through the master connection;
// - failover: after SIGKILL of the leader, the same master connection writes again (ioredis
//   reconnects through the sentinels; bounded retry), on a new leader; the slave connection
//   reads again.
// Prints `sentinel clients (ioredis): ok` at the end; exits 1 with `FAIL <what>` on the first
// failed check. Every connection is closed on the way out, so node exits.
"use strict";

const Redis = require("ioredis"); // from this directory's node_modules

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const sentinels = String(option("--sentinels", ""))
  .split(",")
  .filter(Boolean)
  .map((hp) => {
    const [host, port] = hp.split(":");
    return { host, port: Number(port) };
  });
const name = option("--name", "mymaster");
const leaderPid = option("--leader-pid") ? Number(option("--leader-pid")) : null;
const leader = option("--leader", null);

const REPLICATION_MS = 10000;
const EVENT_MS = 10000;
const FAILOVER_MS = 30000;

class CheckFailed extends Error {}

function passed(what) {
  console.log(`ok ${what}`);
}

function expect(condition, what, detail) {
  if (!condition) {
    throw new CheckFailed(detail === undefined ? what : `${what}: ${detail}`);
  }
  passed(what);
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `check` (an async function) until it returns a true value; errors count as "not yet".
async function waitFor(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) {
        return value;
      }
    } catch (err) {
      last = err;
    }
    await pause(50);
  }
  throw new CheckFailed(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
}

// The command's promise, or a rejection after `ms` (ioredis queues commands while it reconnects).
function within(ms, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no reply within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A STATUS entry's state in RESP2 (ioredis's protocol): [state, ...].
const stateOf = (entry) => (Array.isArray(entry) ? String(entry[0]) : String(entry));

async function portOf(client) {
  const info = await client.info("server");
  const match = /tcp_port:(\d+)/.exec(info);
  return match ? Number(match[1]) : null;
}

async function roleOf(client) {
  return String((await client.call("ROLE"))[0]);
}

async function main(connections) {
  const open = (options) => {
    const client = new Redis({ sentinels, name, ...options });
    client.on("error", () => {}); // reconnects are expected during the failover
    connections.push(client);
    return client;
  };

  const sentinel = new Redis({ ...sentinels[0], retryStrategy: null, lazyConnect: false });
  sentinel.on("error", () => {});
  connections.push(sentinel);
  const [leaderHost, leaderPort] = await sentinel.call("SENTINEL", "get-master-addr-by-name", name);
  expect(leader === null || `${leaderHost}:${leaderPort}` === leader,
    `the sentinels name the leader ${leaderHost}:${leaderPort}`, leader);

  // --- role: 'master'
  const master = open({ role: "master" });
  expect((await roleOf(master)) === "master" && (await portOf(master)) === Number(leaderPort),
    "role 'master' is on the leader (ROLE master, INFO tcp_port)");
  expect((await master.call("HEARTBEAT", "io-a")) === 1, "master: HEARTBEAT io-a -> 1");
  expect((await master.call("HEARTBEAT", "io-b", "TTL", "120")) === 1, "master: HEARTBEAT io-b TTL 120 -> 1");
  expect((await master.set("user:io-c:presence", "online", "EX", 120)) === "OK",
    "master: SET user:io-c:presence online EX 120 -> OK");
  const states = (await master.call("MSTATUS", "io-a", "io-b", "io-c", "io-none")).map(stateOf);
  expect(JSON.stringify(states) === JSON.stringify(["online", "online", "online", "offline"]),
    "master: MSTATUS io-a io-b io-c io-none -> online online online offline", JSON.stringify(states));

  // --- role: 'slave'
  const replica = open({ role: "slave" });
  const replicaPort = await portOf(replica);
  const role = await replica.call("ROLE");
  expect(String(role[0]) === "slave" && Number(role[2]) === Number(leaderPort) && replicaPort !== Number(leaderPort),
    `role 'slave' is on follower 127.0.0.1:${replicaPort} (ROLE slave of the leader)`, JSON.stringify(role));
  await waitFor(async () => JSON.stringify((await replica.call("MSTATUS", "io-a", "io-b", "io-c")).map(stateOf))
    === JSON.stringify(["online", "online", "online"]), REPLICATION_MS, "the follower to have the writes");
  passed("slave: MSTATUS io-a io-b io-c -> online online online");
  expect(stateOf(await replica.call("STATUS", "io-b")) === "online", "slave: STATUS io-b -> online");
  expect((await replica.get("user:io-c:presence")) === "online", "slave: GET user:io-c:presence -> online");
  for (const [what, write] of [
    ["HEARTBEAT", () => replica.call("HEARTBEAT", "io-d")],
    ["SET", () => replica.set("user:io-d:presence", "online", "EX", 30)],
  ]) {
    let error = null;
    try {
      await write();
    } catch (err) {
      error = err;
    }
    expect(error !== null && /^READONLY You can't write against a read only replica/.test(error.message),
      `slave: ${what} -> READONLY`, error ? error.message : "accepted by a follower");
  }

  // --- a subscriber with role: 'slave'
  const subscriber = open({ role: "slave" });
  const subscriberPort = await portOf(subscriber);
  expect(subscriberPort !== Number(leaderPort) && (await roleOf(subscriber)) === "slave",
    `subscriber (role 'slave') is on follower 127.0.0.1:${subscriberPort}`);
  const events = [];
  subscriber.on("message", (channel, message) => events.push({ channel, message }));
  await subscriber.subscribe("presence:io-e");
  const eventFor = (channel, state) => waitFor(
    async () => events.find((e) => e.channel === channel && e.message.includes(`"state":"${state}"`)),
    EVENT_MS, `the ${state} event on ${channel}`);
  await master.call("HEARTBEAT", "io-e", "TTL", "120");
  await eventFor("presence:io-e", "online");
  passed("subscriber: online event for io-e");
  await master.call("OFFLINE", "io-e");
  const offline = await eventFor("presence:io-e", "offline");
  passed(`subscriber: offline event for io-e after OFFLINE through the master connection: ${offline.message}`);
  await subscriber.quit();

  if (leaderPid === null) {
    console.log("no --leader-pid: failover checks skipped");
  } else {
    // Both followers have io-c (whichever is promoted keeps it), asked directly.
    const replicas = (await sentinel.call("SENTINEL", "replicas", name)).map((flat) => {
      const fields = {};
      for (let i = 0; i + 1 < flat.length; i += 2) {
        fields[String(flat[i])] = String(flat[i + 1]);
      }
      return fields;
    });
    expect(replicas.length === 2, "SENTINEL replicas lists two followers", JSON.stringify(replicas));
    for (const r of replicas) {
      const direct = new Redis({ host: r.ip, port: Number(r.port), retryStrategy: null });
      direct.on("error", () => {});
      connections.push(direct);
      await waitFor(async () => stateOf(await direct.call("STATUS", "io-c")) === "online",
        REPLICATION_MS, `follower ${r.port} to have io-c`);
      await direct.quit();
    }
    const killedAt = Date.now();
    process.kill(leaderPid, "SIGKILL");
    passed(`leader (pid ${leaderPid}) killed with SIGKILL`);
    let attempts = 0;
    let lastError = null;
    let resumed = null;
    while (resumed === null) {
      attempts += 1;
      try {
        resumed = await within(3000, master.call("HEARTBEAT", "io-f", "TTL", "120"));
      } catch (err) {
        lastError = err;
        if (Date.now() - killedAt > FAILOVER_MS) {
          throw new CheckFailed(`the master connection never wrote again within ${FAILOVER_MS} ms: ${lastError.message}`);
        }
        await pause(100);
      }
    }
    // 1, or 0 if the old leader applied it and replicated it before it died (ioredis resends a
    // command left unanswered by a closed connection).
    expect(resumed === 1 || resumed === 0, `master: HEARTBEAT writes again ${((Date.now() - killedAt) / 1000).toFixed(2)} s after SIGKILL `
      + `(${attempts} attempts${lastError ? `, last error: ${lastError.message}` : ""})`);
    const newPort = await portOf(master);
    expect(newPort !== Number(leaderPort) && (await roleOf(master)) === "master",
      `master connection is on the new leader 127.0.0.1:${newPort} (ROLE master)`);
    const [, announced] = await sentinel.call("SENTINEL", "get-master-addr-by-name", name);
    expect(Number(announced) === newPort, `the sentinels name the new leader 127.0.0.1:${announced}`);
    expect(stateOf(await master.call("STATUS", "io-f")) === "online", "master: STATUS io-f -> online");
    expect(stateOf(await master.call("STATUS", "io-c")) === "online",
      "master: io-c (written before the failover) is online on the new leader");
    await waitFor(async () => stateOf(await within(3000, replica.call("STATUS", "io-f"))) === "online",
      FAILOVER_MS, "the slave connection to read io-f");
    const readFrom = await portOf(replica);
    const readRole = await roleOf(replica);
    expect(readRole === "slave" && readFrom !== newPort && readFrom !== Number(leaderPort),
      `slave connection reads after the failover, from the remaining follower 127.0.0.1:${readFrom}`);
  }
  console.log("sentinel clients (ioredis): ok");
}

const connections = [];
main(connections)
  .then(() => 0, (err) => {
    console.log(`FAIL ${err instanceof CheckFailed ? err.message : err.stack}`);
    console.log("sentinel clients (ioredis): failed");
    return 1;
  })
  .then((code) => {
    for (const client of connections) {
      client.disconnect(); // immediate: quit() would wait on a dead server
    }
    process.exitCode = code;
  });
