#!/usr/bin/env node
// Checks that ioredis's transactions work against presenced as against Redis.
//
// Usage: node ioredis_check.js --port N [--host H]
//
// multi() ... exec() with presence commands (through call()) and presence keys returns
// [error, result] pairs in order; a runtime error inside is one pair and later commands run;
// a queue-time error rejects exec() with EXECABORT; watch() then a change from another
// connection makes exec() resolve to null; ssubscribe() to presence:{<user>} gets the user's
// events as smessage. Prints one line per failed check and a summary;
// exits 1 if any check failed.
"use strict";

const path = require("path");
const Redis = require(path.join(__dirname, "node", "node_modules", "ioredis"));

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : fallback;
};
const port = Number(option("--port"));
const host = option("--host", "127.0.0.1");

let passed = 0;
const failures = [];
function check(name, condition, detail) {
  if (condition) {
    passed += 1;
  } else {
    failures.push(name);
    console.log(`FAIL ${name}: ${detail}`);
  }
}

async function main() {
  const r = new Redis({ port, host, maxRetriesPerRequest: 1 });
  const other = new Redis({ port, host, maxRetriesPerRequest: 1 });
  try {
    const results = await r
      .multi()
      .call("HEARTBEAT", "io-1")
      .set("user:io-2:presence", "away", "EX", 30)
      .get("user:io-2:presence")
      .call("STATUS", "io-3")
      .exec();
    check("multi heartbeat", results[0][0] === null && results[0][1] === 1, JSON.stringify(results));
    check("multi set/get", results[1][1] === "OK" && results[2][1] === "away", JSON.stringify(results));
    check("multi status", Array.isArray(results[3][1]) && results[3][1][0] === "offline", JSON.stringify(results));

    const mixed = await r.multi().call("HEARTBEAT", "io-4", "TTL", "0").call("HEARTBEAT", "io-5").exec();
    check(
      "runtime error in place",
      mixed[0][0] instanceof Error && /invalid TTL/.test(mixed[0][0].message) && mixed[1][1] === 1,
      String(mixed)
    );

    let aborted = null;
    try {
      await r.multi().call("HEARTBEAT", "io-6").call("NOSUCHCOMMAND").exec();
    } catch (err) {
      aborted = err;
    }
    check("queue-time error aborts", aborted !== null && /EXECABORT/.test(aborted.message), String(aborted));
    const status = await r.call("STATUS", "io-6");
    check("aborted transaction ran nothing", status[0] === "offline", JSON.stringify(status));

    await r.set("user:io-7:presence", "online", "EX", 30);
    await r.watch("user:io-7:presence");
    await other.call("HEARTBEAT", "io-7");
    const watched = await r.multi().set("user:io-7:presence", "busy").exec();
    check("watch broken by a heartbeat", watched === null, JSON.stringify(watched));
    check("nothing ran", (await r.get("user:io-7:presence")) === "online", "value changed");

    // Sharded pub/sub: ssubscribe() to a user's shard channel, the smessage event.
    const sub = new Redis({ port, host, maxRetriesPerRequest: 1 });
    try {
      await r.call("OFFLINE", "io-8");
      const channel = "presence:{io-8}";
      const count = await sub.ssubscribe(channel);
      check("ssubscribe confirmed", count === 1, String(count));
      const event = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no smessage within 10 s")), 10000);
        sub.on("smessage", (from, message) => {
          clearTimeout(timer);
          resolve([from, message]);
        });
      });
      await r.call("HEARTBEAT", "io-8");
      const [from, message] = await event;
      const payload = JSON.parse(message);
      check("smessage on presence:{user}", from === channel && payload.user === "io-8" && payload.state === "online", message);
      check("spublish counts the shard subscriber", (await r.spublish(channel, "hi")) === 1, "count");
    } finally {
      sub.disconnect();
    }
  } finally {
    r.disconnect();
    other.disconnect();
  }
  console.log(`ioredis_check: ${passed} passed, ${failures.length} failed`);
  process.exit(failures.length ? 1 : 0);
}

main().catch((err) => {
  console.log(`ioredis_check: crashed: ${err.stack || err}`);
  process.exit(1);
});
