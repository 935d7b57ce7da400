//! The presence commands: HEARTBEAT, MHEARTBEAT, STATUS, MSTATUS, OFFLINE.

use bytes::Bytes;

use super::{CommandSpec, Ctx, SYNTAX_ERROR, parse_i64, printable};
use crate::limits::{TTL_S_MAX, TTL_S_MIN};
use crate::resp::{Protocol, ReplyBuf};
use crate::stats::Stats;
use crate::store::{Slot, UserKey};

const PRESENCE_ACL: &[&str] = &["@presence", "@fast"];

pub const HEARTBEAT: CommandSpec = CommandSpec {
    name: "heartbeat",
    arity: -2,
    flags: &["write", "fast"],
    first_key: 1,
    last_key: 1,
    key_step: 1,
    acl_categories: PRESENCE_ACL,
    group: "presence",
    since: "0.1.0",
    summary: "Marks a user online now and refreshes their last-seen time. Replies 1 if this brought them online.",
    complexity: "O(1)",
    handler: heartbeat,
    subcommands: &[],
};

pub const MHEARTBEAT: CommandSpec = CommandSpec {
    name: "mheartbeat",
    arity: -2,
    flags: &["write"],
    first_key: 1,
    last_key: -1,
    key_step: 1,
    acl_categories: &["@presence"],
    group: "presence",
    since: "0.1.0",
    summary: "Heartbeats many users at the default TTL. Replies with how many came online.",
    complexity: "O(N) where N is the number of users",
    handler: mheartbeat,
    subcommands: &[],
};

pub const STATUS: CommandSpec = CommandSpec {
    name: "status",
    arity: 2,
    flags: &["readonly", "fast"],
    first_key: 1,
    last_key: 1,
    key_step: 1,
    acl_categories: PRESENCE_ACL,
    group: "presence",
    since: "0.1.0",
    summary: "Returns a user's state (online or offline) and last-seen time in Unix milliseconds.",
    complexity: "O(1)",
    handler: status,
    subcommands: &[],
};

pub const MSTATUS: CommandSpec = CommandSpec {
    name: "mstatus",
    arity: -2,
    flags: &["readonly"],
    first_key: 1,
    last_key: -1,
    key_step: 1,
    acl_categories: &["@presence"],
    group: "presence",
    since: "0.1.0",
    summary: "Returns the state and last-seen time of many users, in request order.",
    complexity: "O(N) where N is the number of users",
    handler: mstatus,
    subcommands: &[],
};

pub const OFFLINE: CommandSpec = CommandSpec {
    name: "offline",
    arity: 2,
    flags: &["write", "fast"],
    first_key: 1,
    last_key: 1,
    key_step: 1,
    acl_categories: PRESENCE_ACL,
    group: "presence",
    since: "0.1.0",
    summary: "Logs a user out now, keeping their last-seen time. Replies 1 if they were online.",
    complexity: "O(1)",
    handler: offline,
    subcommands: &[],
};

fn heartbeat(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mut ttl_s = ctx.server.config.default_ttl_s;
    let mut rest = &args[2..];
    while let Some(option) = rest.first() {
        if option.eq_ignore_ascii_case(b"TTL") && rest.len() >= 2 {
            match parse_ttl(&rest[1]) {
                Ok(t) => ttl_s = t,
                Err(message) => return ctx.out.error(&message),
            }
            rest = &rest[2..];
        } else {
            return ctx.out.error(SYNTAX_ERROR);
        }
    }
    let key = match parse_user(ctx, &args[1]) {
        Some(key) => key,
        None => return,
    };
    let came_online = ctx.server.store.heartbeat(key, ttl_s, ctx.now_ms);
    Stats::add(&ctx.server.stats.heartbeats, 1);
    ctx.out.integer(i64::from(came_online));
}

fn mheartbeat(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(keys) = parse_users(ctx, &args[1..]) else {
        return;
    };
    let ttl_s = ctx.server.config.default_ttl_s;
    let came_online = ctx.server.store.heartbeat_many(&keys, ttl_s, ctx.now_ms);
    Stats::add(&ctx.server.stats.heartbeats, keys.len() as u64);
    ctx.out.integer(came_online as i64);
}

fn status(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(key) = parse_user(ctx, &args[1]) else {
        return;
    };
    let slot = ctx.server.store.get(key);
    Stats::add(&ctx.server.stats.status_lookups, 1);
    write_status(ctx.out, slot, ctx.now_ms);
}

fn mstatus(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(keys) = parse_users(ctx, &args[1..]) else {
        return;
    };
    let slots = ctx.server.store.get_many(&keys);
    Stats::add(&ctx.server.stats.status_lookups, slots.len() as u64);
    ctx.out.array(slots.len());
    for slot in slots {
        write_status(ctx.out, slot, ctx.now_ms);
    }
}

fn offline(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(key) = parse_user(ctx, &args[1]) else {
        return;
    };
    let was_online = ctx.server.store.offline(key, ctx.now_ms);
    Stats::add(&ctx.server.stats.logouts, 1);
    ctx.out.integer(i64::from(was_online));
}

/// RESP2: `[state, last_seen_ms]`; RESP3: `{state: ..., last_seen_ms: ...}`. A user never
/// seen has a null last-seen.
fn write_status(out: &mut ReplyBuf, slot: Slot, now_ms: u64) {
    let state: &[u8] = if slot.is_online(now_ms) {
        b"online"
    } else {
        b"offline"
    };
    match out.protocol {
        Protocol::Resp2 => {
            out.array(2);
            out.bulk(state);
        }
        Protocol::Resp3 => {
            out.map(2);
            out.bulk(b"state");
            out.bulk(state);
            out.bulk(b"last_seen_ms");
        }
    }
    match slot.last_seen_ms() {
        Some(ms) => out.integer(ms as i64),
        None => out.null(),
    }
}

fn parse_user<'a>(ctx: &mut Ctx<'_>, id: &'a [u8]) -> Option<UserKey<'a>> {
    match ctx.server.store.parse(id) {
        Ok(key) => Some(key),
        Err(err) => {
            ctx.out.error(&err.message());
            None
        }
    }
}

/// Parses every ID before touching the store, so a bad ID anywhere changes nothing.
fn parse_users<'a>(ctx: &mut Ctx<'_>, ids: &'a [Bytes]) -> Option<Vec<UserKey<'a>>> {
    let mut keys = Vec::with_capacity(ids.len());
    for id in ids {
        keys.push(parse_user(ctx, id)?);
    }
    Some(keys)
}

fn parse_ttl(arg: &[u8]) -> Result<u64, String> {
    match parse_i64(arg) {
        Some(t) if (TTL_S_MIN as i64..=TTL_S_MAX as i64).contains(&t) => Ok(t as u64),
        _ => Err(format!(
            "ERR invalid TTL '{}': must be an integer from {TTL_S_MIN} to {TTL_S_MAX} seconds",
            printable(arg, 64)
        )),
    }
}
