//! Drop-in generic key commands on presence keys: EXISTS, DEL, UNLINK, TTL, PTTL,
//! EXPIRETIME, PEXPIRETIME, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST, TYPE, SCAN, KEYS —
//! and Redis's WRONGTYPE answer for the list, hash, set and sorted-set commands apps may send
//! to a presence key by mistake.

use bytes::Bytes;

use super::strings::parse_expiry;
use super::{CommandSpec, Ctx, NOT_AN_INTEGER, SYNTAX_ERROR, parse_i64, presence_user, printable};
use crate::dropin::NotifyFlags;
use crate::glob::glob_match;
use crate::limits::KEYS_RESULTS_MAX;
use crate::store::{ExpireCondition, KeyTtl};

#[allow(clippy::too_many_arguments)]
const fn key_command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    first_key: i32,
    last_key: i32,
    group: &'static str,
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, group, summary, handler)
        .with_keys(first_key, last_key, if first_key > 0 { 1 } else { 0 })
        .with_acl(&["@keyspace"])
        .with_complexity("O(1) per key")
}

const READ: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write", "fast"];

pub const EXISTS: CommandSpec = key_command(
    "exists",
    -2,
    READ,
    1,
    -1,
    "generic",
    "Counts the given presence keys that exist (users online).",
    exists,
);
pub const DEL: CommandSpec = key_command(
    "del",
    -2,
    &["write"],
    1,
    -1,
    "generic",
    "Deletes presence keys: logs their users out.",
    del,
);
pub const UNLINK: CommandSpec = key_command(
    "unlink",
    -2,
    &["write", "fast"],
    1,
    -1,
    "generic",
    "Deletes presence keys: logs their users out.",
    del,
);
pub const TTL: CommandSpec = key_command(
    "ttl",
    2,
    READ,
    1,
    1,
    "generic",
    "Returns a presence key's time to live in seconds.",
    ttl,
);
pub const PTTL: CommandSpec = key_command(
    "pttl",
    2,
    READ,
    1,
    1,
    "generic",
    "Returns a presence key's time to live in milliseconds.",
    pttl,
);
pub const EXPIRETIME: CommandSpec = key_command(
    "expiretime",
    2,
    READ,
    1,
    1,
    "generic",
    "Returns when a presence key expires, in Unix seconds.",
    expiretime,
);
pub const PEXPIRETIME: CommandSpec = key_command(
    "pexpiretime",
    2,
    READ,
    1,
    1,
    "generic",
    "Returns when a presence key expires, in Unix milliseconds.",
    pexpiretime,
);
pub const EXPIRE: CommandSpec = key_command(
    "expire",
    -3,
    WRITE,
    1,
    1,
    "generic",
    "Sets a presence key's TTL in seconds.",
    expire,
);
pub const PEXPIRE: CommandSpec = key_command(
    "pexpire",
    -3,
    WRITE,
    1,
    1,
    "generic",
    "Sets a presence key's TTL in milliseconds.",
    pexpire,
);
pub const EXPIREAT: CommandSpec = key_command(
    "expireat",
    -3,
    WRITE,
    1,
    1,
    "generic",
    "Sets when a presence key expires, in Unix seconds.",
    expireat,
);
pub const PEXPIREAT: CommandSpec = key_command(
    "pexpireat",
    -3,
    WRITE,
    1,
    1,
    "generic",
    "Sets when a presence key expires, in Unix milliseconds.",
    pexpireat,
);
pub const PERSIST: CommandSpec = key_command(
    "persist",
    2,
    WRITE,
    1,
    1,
    "generic",
    "Removes a presence key's TTL: the user stays online until deleted.",
    persist,
);
pub const TYPE: CommandSpec = key_command(
    "type",
    2,
    READ,
    1,
    1,
    "generic",
    "Returns `string` for an existing presence key, `none` otherwise.",
    key_type,
);
pub const SCAN: CommandSpec = key_command(
    "scan",
    -2,
    &["readonly"],
    0,
    0,
    "generic",
    "Iterates over the presence keys of online users.",
    scan,
);
pub const KEYS: CommandSpec = key_command(
    "keys",
    2,
    &["readonly"],
    0,
    0,
    "generic",
    "Returns every presence key matching a pattern (cost: one pass over all users).",
    keys,
);

pub const LPUSH: CommandSpec = key_command(
    "lpush",
    -3,
    &["write"],
    1,
    1,
    "list",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_write,
);
pub const RPUSH: CommandSpec = key_command(
    "rpush",
    -3,
    &["write"],
    1,
    1,
    "list",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_write,
);
pub const LRANGE: CommandSpec = key_command(
    "lrange",
    4,
    &["readonly"],
    1,
    1,
    "list",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_read_array,
);
pub const HSET: CommandSpec = key_command(
    "hset",
    -4,
    &["write"],
    1,
    1,
    "hash",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_write,
);
pub const HGET: CommandSpec = key_command(
    "hget",
    3,
    &["readonly"],
    1,
    1,
    "hash",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_read_nil,
);
pub const HGETALL: CommandSpec = key_command(
    "hgetall",
    2,
    &["readonly"],
    1,
    1,
    "hash",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_read_map,
);
pub const SADD: CommandSpec = key_command(
    "sadd",
    -3,
    &["write"],
    1,
    1,
    "set",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_write,
);
pub const SMEMBERS: CommandSpec = key_command(
    "smembers",
    2,
    &["readonly"],
    1,
    1,
    "set",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_read_set,
);
pub const ZADD: CommandSpec = key_command(
    "zadd",
    -4,
    &["write"],
    1,
    1,
    "sorted-set",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_write,
);

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mut count = 0;
    for key in &args[1..] {
        let Some(user) = presence_user(ctx, key) else {
            return;
        };
        count += i64::from(ctx.server.store.key_value(user, ctx.now_ms).is_some());
    }
    ctx.out.integer(count);
}

fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mut users = Vec::with_capacity(args.len() - 1);
    for key in &args[1..] {
        let Some(user) = presence_user(ctx, key) else {
            return;
        };
        users.push(user);
    }
    let deleted = users
        .into_iter()
        .filter(|user| ctx.server.store.del_key(*user, ctx.now_ms))
        .count();
    ctx.out.integer(deleted as i64);
}

fn remaining(ctx: &mut Ctx<'_>, key: &[u8]) -> Option<KeyTtl> {
    let user = presence_user(ctx, key)?;
    Some(ctx.server.store.key_ttl(user, ctx.now_ms))
}

fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    match remaining(ctx, &args[1]) {
        Some(KeyTtl::Missing) => ctx.out.integer(-2),
        Some(KeyTtl::Persistent) => ctx.out.integer(-1),
        // Redis rounds to the nearest second.
        Some(KeyTtl::RemainingMs(ms)) => ctx.out.integer(((ms + 500) / 1000) as i64),
        None => {}
    }
}

fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    match remaining(ctx, &args[1]) {
        Some(KeyTtl::Missing) => ctx.out.integer(-2),
        Some(KeyTtl::Persistent) => ctx.out.integer(-1),
        Some(KeyTtl::RemainingMs(ms)) => ctx.out.integer(ms as i64),
        None => {}
    }
}

fn expiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let now_ms = ctx.now_ms;
    match remaining(ctx, &args[1]) {
        Some(KeyTtl::Missing) => ctx.out.integer(-2),
        Some(KeyTtl::Persistent) => ctx.out.integer(-1),
        Some(KeyTtl::RemainingMs(ms)) => ctx.out.integer(((now_ms + ms) / 1000) as i64),
        None => {}
    }
}

fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let now_ms = ctx.now_ms;
    match remaining(ctx, &args[1]) {
        Some(KeyTtl::Missing) => ctx.out.integer(-2),
        Some(KeyTtl::Persistent) => ctx.out.integer(-1),
        Some(KeyTtl::RemainingMs(ms)) => ctx.out.integer((now_ms + ms) as i64),
        None => {}
    }
}

fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    expire_generic(ctx, args, 1000, false, "expire");
}

fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    expire_generic(ctx, args, 1, false, "pexpire");
}

fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    expire_generic(ctx, args, 1000, true, "expireat");
}

fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    expire_generic(ctx, args, 1, true, "pexpireat");
}

/// EXPIRE and friends, with Redis's option rules and errors. A time already past deletes the
/// key (the user is logged out), as in Redis.
fn expire_generic(ctx: &mut Ctx<'_>, args: &[Bytes], unit_ms: u64, absolute: bool, name: &str) {
    // As in Redis: every option is read first, then the combinations are judged. XX goes
    // with GT or LT; NX goes with none of them.
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[3..] {
        if option.eq_ignore_ascii_case(b"NX") {
            nx = true;
        } else if option.eq_ignore_ascii_case(b"XX") {
            xx = true;
        } else if option.eq_ignore_ascii_case(b"GT") {
            gt = true;
        } else if option.eq_ignore_ascii_case(b"LT") {
            lt = true;
        } else {
            return ctx
                .out
                .error(&format!("ERR Unsupported option {}", printable(option, 64)));
        }
    }
    if nx && (xx || gt || lt) {
        return ctx
            .out
            .error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return ctx
            .out
            .error("ERR GT and LT options at the same time are not compatible");
    }
    let condition = match (nx, xx, gt, lt) {
        (true, _, _, _) => ExpireCondition::IfNoTtl,
        // GT already fails on a key without a TTL, so XX adds nothing to it.
        (_, _, true, _) => ExpireCondition::IfGreater,
        (_, true, _, true) => ExpireCondition::IfTtlAndLess,
        (_, false, _, true) => ExpireCondition::IfLess,
        (_, true, _, _) => ExpireCondition::IfTtl,
        _ => ExpireCondition::Always,
    };
    let Some(value) = parse_i64(&args[2]) else {
        return ctx.out.error(NOT_AN_INTEGER);
    };
    let Some(user) = presence_user(ctx, &args[1]) else {
        return;
    };
    let at_ms = if value <= 0 && !absolute {
        Some(ctx.now_ms)
    } else if value <= 0 {
        Some(0)
    } else {
        match parse_expiry(&args[2], unit_ms, absolute, ctx.now_ms, name) {
            Ok(at_ms) => Some(at_ms),
            Err(message) => return ctx.out.error(&message),
        }
    };
    let changed = ctx
        .server
        .store
        .expire_key(user, at_ms, condition, ctx.now_ms);
    if changed && at_ms.is_some_and(|at| at > ctx.now_ms) {
        ctx.server
            .keyspace
            .notify(&ctx.server.pubsub, NotifyFlags::GENERIC, "expire", &args[1]);
    }
    ctx.out.integer(i64::from(changed));
}

fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(user) = presence_user(ctx, &args[1]) else {
        return;
    };
    let changed = ctx
        .server
        .store
        .expire_key(user, None, ExpireCondition::Always, ctx.now_ms);
    if changed {
        ctx.server.keyspace.notify(
            &ctx.server.pubsub,
            NotifyFlags::GENERIC,
            "persist",
            &args[1],
        );
    }
    ctx.out.integer(i64::from(changed));
}

fn key_type(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(user) = presence_user(ctx, &args[1]) else {
        return;
    };
    let exists = ctx.server.store.key_value(user, ctx.now_ms).is_some();
    ctx.out.simple(if exists { "string" } else { "none" });
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]` over the keys of online users.
/// Each call examines about 8 x COUNT user positions (pages no user ever touched are skipped
/// for free), so one call's work is bounded whatever the store's size.
fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return ctx.out.error("ERR invalid cursor");
    };
    let mut pattern: Option<&[u8]> = None;
    let mut count = 10usize;
    let mut strings_only = true;
    let mut rest = &args[2..];
    while let Some(option) = rest.first() {
        let Some(value) = rest.get(1) else {
            return ctx.out.error(SYNTAX_ERROR);
        };
        if option.eq_ignore_ascii_case(b"MATCH") {
            pattern = Some(value);
        } else if option.eq_ignore_ascii_case(b"COUNT") {
            match parse_i64(value) {
                Some(n) if n >= 1 => count = (n as usize).min(1_000_000),
                Some(_) => return ctx.out.error(SYNTAX_ERROR),
                None => return ctx.out.error(NOT_AN_INTEGER),
            }
        } else if option.eq_ignore_ascii_case(b"TYPE") {
            strings_only = value.eq_ignore_ascii_case(b"string");
        } else {
            return ctx.out.error(SYNTAX_ERROR);
        }
        rest = &rest[2..];
    }
    let mut users = Vec::new();
    let next = ctx
        .server
        .store
        .scan(cursor, count.saturating_mul(8), ctx.now_ms, &mut users);
    let keys: Vec<Vec<u8>> = users
        .iter()
        .filter(|_| strings_only)
        .map(|u| ctx.server.keyspace.pattern.key_for(&u.to_bytes()))
        .filter(|k| pattern.is_none_or(|p| glob_match(p, k, false)))
        .collect();
    ctx.out.array(2);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array(keys.len());
    for key in keys {
        ctx.out.bulk(&key);
    }
}

/// `KEYS pattern`: one pass over every user ever seen, refused past `KEYS_RESULTS_MAX`
/// matches so a single call cannot build an unbounded reply; SCAN is the tool for big stores.
fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mut cursor = 0;
    let mut keys = Vec::new();
    let mut users = Vec::new();
    loop {
        users.clear();
        cursor = ctx
            .server
            .store
            .scan(cursor, 1 << 16, ctx.now_ms, &mut users);
        for user in &users {
            let key = ctx.server.keyspace.pattern.key_for(&user.to_bytes());
            if glob_match(&args[1], &key, false) {
                keys.push(key);
            }
        }
        if keys.len() > KEYS_RESULTS_MAX {
            return ctx.out.error(&format!(
                "ERR KEYS would return more than {KEYS_RESULTS_MAX} keys; use SCAN"
            ));
        }
        if cursor == 0 {
            break;
        }
    }
    ctx.out.array(keys.len());
    for key in keys {
        ctx.out.bulk(&key);
    }
}

/// A write of another type: WRONGTYPE if the key exists (a string), as Redis answers; a
/// missing key cannot become a list or hash here, so that is refused too.
fn wrong_type_write(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(user) = presence_user(ctx, &args[1]) else {
        return;
    };
    if ctx.server.store.key_value(user, ctx.now_ms).is_some() {
        return ctx.out.error(WRONGTYPE);
    }
    ctx.out.error(&format!(
        "ERR presence keys hold strings only: '{}' cannot be created as another type",
        printable(&args[1], 128)
    ));
}

/// A read of another type: WRONGTYPE if the key exists, the empty answer if not.
fn wrong_type_read(ctx: &mut Ctx<'_>, args: &[Bytes], empty: fn(&mut Ctx<'_>)) {
    let Some(user) = presence_user(ctx, &args[1]) else {
        return;
    };
    if ctx.server.store.key_value(user, ctx.now_ms).is_some() {
        return ctx.out.error(WRONGTYPE);
    }
    empty(ctx);
}

fn wrong_type_read_nil(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    wrong_type_read(ctx, args, |ctx| ctx.out.null());
}

fn wrong_type_read_array(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    wrong_type_read(ctx, args, |ctx| ctx.out.array(0));
}

fn wrong_type_read_map(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    wrong_type_read(ctx, args, |ctx| ctx.out.map(0));
}

fn wrong_type_read_set(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    wrong_type_read(ctx, args, |ctx| ctx.out.set(0));
}
