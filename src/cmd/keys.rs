//! Drop-in generic key commands on presence keys: EXISTS, DEL, UNLINK, TTL, PTTL,
//! EXPIRETIME, PEXPIRETIME, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST, TYPE, SCAN, KEYS —
//! and Redis's WRONGTYPE answer for the list, hash, set and sorted-set commands apps may send
//! to a presence key by mistake.

use bytes::Bytes;

use super::{Args, CmdError, CmdResult, CommandSpec, Ctx, presence_user, printable};
use crate::dropin::NotifyFlags;
use crate::glob::glob_match;
use crate::limits::KEYS_RESULTS_MAX;
use crate::resp::ReplyBuf;
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
    "Deletes presence keys: forgets their users (presence and last-seen).",
    del,
);
pub const UNLINK: CommandSpec = key_command(
    "unlink",
    -2,
    &["write", "fast"],
    1,
    -1,
    "generic",
    "Deletes presence keys: forgets their users (presence and last-seen).",
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
    &["write", "denyoom", "fast"],
    1,
    1,
    "list",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_write,
);
pub const RPUSH: CommandSpec = key_command(
    "rpush",
    -3,
    &["write", "denyoom", "fast"],
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
    &["write", "denyoom", "fast"],
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
    &["write", "denyoom", "fast"],
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
    &["write", "denyoom", "fast"],
    1,
    1,
    "sorted-set",
    "Presence keys are strings: WRONGTYPE.",
    wrong_type_write,
);

fn exists(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let mut count = 0;
    for key in args.rest() {
        let user = presence_user(ctx, key)?;
        count += i64::from(ctx.shared.store.key_value(user, ctx.now_ms).is_some());
    }
    ctx.out.integer(count);
    Ok(())
}

fn del(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let keys = args.rest();
    let mut users = Vec::with_capacity(keys.len());
    for key in keys {
        users.push(presence_user(ctx, key)?);
    }
    let deleted = users
        .into_iter()
        .filter(|user| ctx.shared.store.del_key(*user, ctx.now_ms))
        .count();
    ctx.out.integer(deleted as i64);
    Ok(())
}

/// TTL, PTTL, EXPIRETIME and PEXPIRETIME: -2 for a missing key, -1 for one without a TTL,
/// else `remaining(ms)` in the command's unit.
fn reply_ttl(ctx: &mut Ctx<'_>, args: &mut Args<'_>, remaining: fn(u64, u64) -> u64) -> CmdResult {
    let user = presence_user(ctx, args.required()?)?;
    match ctx.shared.store.key_ttl(user, ctx.now_ms) {
        KeyTtl::Missing => ctx.out.integer(-2),
        KeyTtl::Persistent => ctx.out.integer(-1),
        KeyTtl::RemainingMs(ms) => ctx.out.integer(remaining(ctx.now_ms, ms) as i64),
    }
    Ok(())
}

fn ttl(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    // Redis rounds to the nearest second.
    reply_ttl(ctx, args, |_, ms| (ms + 500) / 1000)
}

fn pttl(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    reply_ttl(ctx, args, |_, ms| ms)
}

fn expiretime(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    reply_ttl(ctx, args, |now_ms, ms| (now_ms + ms) / 1000)
}

fn pexpiretime(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    reply_ttl(ctx, args, |now_ms, ms| now_ms + ms)
}

fn expire(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    expire_generic(ctx, args, 1000, false, "expire")
}

fn pexpire(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    expire_generic(ctx, args, 1, false, "pexpire")
}

fn expireat(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    expire_generic(ctx, args, 1000, true, "expireat")
}

fn pexpireat(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    expire_generic(ctx, args, 1, true, "pexpireat")
}

/// EXPIRE's `NX | XX | GT | LT`, with Redis's rules: every option is read first, then the
/// combinations are judged. XX goes with GT or LT; NX goes with none of them.
fn expire_condition(options: &[Bytes]) -> Result<ExpireCondition, CmdError> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        if option.eq_ignore_ascii_case(b"NX") {
            nx = true;
        } else if option.eq_ignore_ascii_case(b"XX") {
            xx = true;
        } else if option.eq_ignore_ascii_case(b"GT") {
            gt = true;
        } else if option.eq_ignore_ascii_case(b"LT") {
            lt = true;
        } else {
            return Err(CmdError::UnsupportedOption(printable(option, 64)));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CmdError::ExpireNxWithOthers);
    }
    if gt && lt {
        return Err(CmdError::ExpireGtWithLt);
    }
    Ok(match (nx, xx, gt, lt) {
        (true, _, _, _) => ExpireCondition::IfNoTtl,
        // GT already fails on a key without a TTL, so XX adds nothing to it.
        (_, _, true, _) => ExpireCondition::IfGreater,
        (_, true, _, true) => ExpireCondition::IfTtlAndLess,
        (_, false, _, true) => ExpireCondition::IfLess,
        (_, true, _, _) => ExpireCondition::IfTtl,
        _ => ExpireCondition::Always,
    })
}

/// When `EXPIRE`'s argument says the key expires, in Unix milliseconds, checked as Redis
/// checks it: negative and past times are allowed (they delete the key; 0 stands for any
/// time before the epoch), but a unit conversion or an addition of the current time that
/// would overflow a signed 64-bit millisecond count is an invalid expire time.
fn expire_at_ms(
    value: i64,
    unit_ms: u64,
    absolute: bool,
    now_ms: u64,
    name: &'static str,
) -> Result<u64, CmdError> {
    let invalid = || CmdError::InvalidExpireTime(name);
    let when_ms = value.checked_mul(unit_ms as i64).ok_or_else(invalid)?;
    let base_ms = if absolute { 0 } else { now_ms as i64 };
    let at_ms = when_ms.checked_add(base_ms).ok_or_else(invalid)?;
    Ok(at_ms.max(0) as u64)
}

/// EXPIRE and friends, with Redis's option rules and errors. A time already past deletes the
/// key (the user is logged out), as in Redis.
fn expire_generic(
    ctx: &mut Ctx<'_>,
    args: &mut Args<'_>,
    unit_ms: u64,
    absolute: bool,
    name: &'static str,
) -> CmdResult {
    let key = args.required()?;
    let time = args.required()?;
    let condition = expire_condition(args.rest())?;
    let value = crate::resp::parse_integer(time).ok_or(CmdError::NotAnInteger)?;
    let at_ms = Some(expire_at_ms(value, unit_ms, absolute, ctx.now_ms, name)?);
    let user = presence_user(ctx, key)?;
    let changed = ctx
        .shared
        .store
        .expire_key(user, at_ms, condition, ctx.now_ms);
    if changed && at_ms.is_some_and(|at| at > ctx.now_ms) {
        ctx.shared
            .keyspace
            .notify(ctx.shared.pubsub, NotifyFlags::GENERIC, "expire", key);
    }
    ctx.out.integer(i64::from(changed));
    Ok(())
}

fn persist(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let key = args.required()?;
    let user = presence_user(ctx, key)?;
    let changed = ctx
        .shared
        .store
        .expire_key(user, None, ExpireCondition::Always, ctx.now_ms);
    if changed {
        ctx.shared
            .keyspace
            .notify(ctx.shared.pubsub, NotifyFlags::GENERIC, "persist", key);
    }
    ctx.out.integer(i64::from(changed));
    Ok(())
}

fn key_type(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let user = presence_user(ctx, args.required()?)?;
    let exists = ctx.shared.store.key_value(user, ctx.now_ms).is_some();
    ctx.out.simple(if exists { "string" } else { "none" });
    Ok(())
}

/// `SCAN`'s `[MATCH pattern] [COUNT n] [TYPE type]`.
struct ScanOptions<'a> {
    pattern: Option<&'a [u8]>,
    count: usize,
    strings_only: bool,
}

impl<'a> ScanOptions<'a> {
    fn parse(args: &mut Args<'a>) -> Result<ScanOptions<'a>, CmdError> {
        let mut options = ScanOptions {
            pattern: None,
            count: 10,
            strings_only: true,
        };
        while let Some(option) = args.next() {
            let value = args.value()?;
            if option.eq_ignore_ascii_case(b"MATCH") {
                options.pattern = Some(value);
            } else if option.eq_ignore_ascii_case(b"COUNT") {
                match crate::resp::parse_integer(value) {
                    Some(n) if n >= 1 => options.count = (n as usize).min(1_000_000),
                    Some(_) => return Err(CmdError::Syntax),
                    None => return Err(CmdError::NotAnInteger),
                }
            } else if option.eq_ignore_ascii_case(b"TYPE") {
                options.strings_only = value.eq_ignore_ascii_case(b"string");
            } else {
                return Err(CmdError::Syntax);
            }
        }
        Ok(options)
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]` over the keys of online users.
/// Each call examines about 8 x COUNT user positions (pages no user ever touched are skipped
/// for free), so one call's work is bounded whatever the store's size.
fn scan(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let cursor = std::str::from_utf8(args.required()?)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or(CmdError::InvalidCursor)?;
    let options = ScanOptions::parse(args)?;
    let mut users = Vec::new();
    let next = ctx.shared.store.scan(
        cursor,
        options.count.saturating_mul(8),
        ctx.now_ms,
        &mut users,
    );
    let keys: Vec<Vec<u8>> = users
        .iter()
        .filter(|_| options.strings_only)
        .map(|u| ctx.shared.keyspace.pattern.key_for(&u.to_bytes()))
        .filter(|k| options.pattern.is_none_or(|p| glob_match(p, k, false)))
        .collect();
    ctx.out.array(2);
    ctx.out.bulk(next.to_string().as_bytes());
    ctx.out.array(keys.len());
    for key in keys {
        ctx.out.bulk(&key);
    }
    Ok(())
}

/// `KEYS pattern`: one pass over every user ever seen, refused past `KEYS_RESULTS_MAX`
/// matches so a single call cannot build an unbounded reply; SCAN is the tool for big stores.
fn keys(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let pattern = args.required()?;
    let mut cursor = 0;
    let mut keys = Vec::new();
    let mut users = Vec::new();
    loop {
        users.clear();
        cursor = ctx
            .shared
            .store
            .scan(cursor, 1 << 16, ctx.now_ms, &mut users);
        for user in &users {
            let key = ctx.shared.keyspace.pattern.key_for(&user.to_bytes());
            if glob_match(pattern, &key, false) {
                keys.push(key);
            }
        }
        if keys.len() > KEYS_RESULTS_MAX {
            return Err(CmdError::KeysTooMany);
        }
        if cursor == 0 {
            break;
        }
    }
    ctx.out.array(keys.len());
    for key in keys {
        ctx.out.bulk(&key);
    }
    Ok(())
}

/// A write of another type: WRONGTYPE if the key exists (a string), as Redis answers; a
/// missing key cannot become a list or hash here, so that is refused too.
/// A write of another type. Past `maxmemory` it answers OOM, as Redis does before running a
/// `denyoom` command; otherwise WRONGTYPE, or a refusal to create a key that is not a string.
fn wrong_type_write(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if ctx.shared.memory.over_limit() {
        return Err(CmdError::OutOfMemory);
    }
    let key = args.required()?;
    let user = presence_user(ctx, key)?;
    if ctx.shared.store.key_value(user, ctx.now_ms).is_some() {
        return Err(CmdError::WrongType);
    }
    Err(CmdError::NotAStringKey(printable(key, 128)))
}

/// A read of another type: WRONGTYPE if the key exists, the empty answer if not.
fn wrong_type_read(ctx: &mut Ctx<'_>, args: &mut Args<'_>, empty: fn(&mut ReplyBuf)) -> CmdResult {
    let user = presence_user(ctx, args.required()?)?;
    if ctx.shared.store.key_value(user, ctx.now_ms).is_some() {
        return Err(CmdError::WrongType);
    }
    empty(ctx.out);
    Ok(())
}

fn wrong_type_read_nil(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    wrong_type_read(ctx, args, |out| out.null())
}

fn wrong_type_read_array(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    wrong_type_read(ctx, args, |out| out.array(0))
}

fn wrong_type_read_map(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    wrong_type_read(ctx, args, |out| out.map(0))
}

fn wrong_type_read_set(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    wrong_type_read(ctx, args, |out| out.set(0))
}
