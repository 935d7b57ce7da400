//! Drop-in string commands on presence keys: SET, GET, MGET, SETEX, PSETEX, SETNX, GETDEL,
//! GETEX, MSET — with Redis's reply shapes and errors. A presence key's value is the user's
//! state word, or whatever the app stored (kept byte for byte while the user is online).
//!
//! Past `maxmemory`, a `SET` that would add (a user not tracked yet, or a value that is not a
//! status word) answers Redis's OOM error; one that stores a status word for a tracked user is a
//! heartbeat and goes on. `MSET` is refused whole if any pair would add.

use bytes::Bytes;

use super::{Args, CmdError, CmdResult, CommandSpec, Ctx, presence_user};
use crate::dropin::NotifyFlags;
use crate::limits::PRESENCE_VALUE_LEN_MAX;
use crate::store::{AppStatus, KeyExpiry, KeyValue, Room, SetCondition, UserKey};

#[allow(clippy::too_many_arguments)]
const fn string_command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    first_key: i32,
    last_key: i32,
    key_step: i32,
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "string", summary, handler)
        .with_keys(first_key, last_key, key_step)
        .with_acl(&["@string"])
        .with_complexity("O(1) per key")
}

const WRITE: &[&str] = &["write", "denyoom"];
const WRITE_FAST: &[&str] = &["write", "denyoom", "fast"];
const READ: &[&str] = &["readonly", "fast"];

pub const SET: CommandSpec = string_command(
    "set",
    -3,
    WRITE,
    1,
    1,
    1,
    "Sets a presence key: the user is online, with the value, until the expiry.",
    set,
);
pub const GET: CommandSpec = string_command(
    "get",
    2,
    READ,
    1,
    1,
    1,
    "Returns a presence key's value, nil while the user is offline.",
    get,
);
pub const MGET: CommandSpec = string_command(
    "mget",
    -2,
    &["readonly", "fast"],
    1,
    -1,
    1,
    "Returns the values of many presence keys.",
    mget,
);
pub const SETEX: CommandSpec = string_command(
    "setex",
    4,
    WRITE,
    1,
    1,
    1,
    "Sets a presence key with a TTL in seconds.",
    setex,
);
pub const PSETEX: CommandSpec = string_command(
    "psetex",
    4,
    WRITE,
    1,
    1,
    1,
    "Sets a presence key with a TTL in milliseconds.",
    psetex,
);
pub const SETNX: CommandSpec = string_command(
    "setnx",
    3,
    WRITE_FAST,
    1,
    1,
    1,
    "Sets a presence key only if it does not exist.",
    setnx,
);
pub const GETDEL: CommandSpec = string_command(
    "getdel",
    2,
    &["write", "fast"],
    1,
    1,
    1,
    "Returns a presence key's value and deletes it (forgets the user).",
    getdel,
);
pub const GETEX: CommandSpec = string_command(
    "getex",
    -2,
    &["write", "fast"],
    1,
    1,
    1,
    "Returns a presence key's value and changes its expiry.",
    getex,
);
pub const MSET: CommandSpec = string_command(
    "mset",
    -3,
    WRITE,
    1,
    -1,
    2,
    "Sets many presence keys, without TTLs.",
    mset,
);

/// How a value is stored: a status word in the slot, anything else byte for byte.
fn key_value(value: &[u8]) -> Result<KeyValue<'_>, CmdError> {
    if let Some(status) = AppStatus::from_exact_word(value) {
        return Ok(KeyValue::Status(status));
    }
    if value.len() > PRESENCE_VALUE_LEN_MAX {
        return Err(CmdError::ValueTooLong(value.len()));
    }
    Ok(KeyValue::Custom(value))
}

/// `EX`, `PX`, `EXAT` or `PXAT`: the option, its unit in milliseconds, and whether it is an
/// absolute time.
fn expiry_option(option: &[u8]) -> Option<(&'static [u8], u64, bool)> {
    [
        (&b"EX"[..], 1000, false),
        (b"PX", 1, false),
        (b"EXAT", 1000, true),
        (b"PXAT", 1, true),
    ]
    .into_iter()
    .find(|(name, _, _)| option.eq_ignore_ascii_case(name))
}

/// A relative or absolute expiry in Redis's units, checked as Redis checks it.
fn parse_expiry(
    arg: &[u8],
    unit_ms: u64,
    absolute: bool,
    now_ms: u64,
    command: &'static str,
) -> Result<u64, CmdError> {
    let value = crate::resp::parse_integer(arg).ok_or(CmdError::NotAnInteger)?;
    let invalid = || CmdError::InvalidExpireTime(command);
    if value <= 0 {
        return Err(invalid());
    }
    let ms = (value as u64).checked_mul(unit_ms).ok_or_else(invalid)?;
    let at_ms = if absolute {
        ms
    } else {
        ms.checked_add(now_ms).ok_or_else(invalid)?
    };
    if at_ms > i64::MAX as u64 {
        return Err(invalid());
    }
    Ok(at_ms)
}

/// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT n|KEEPTTL]`'s options.
struct SetOptions {
    condition: SetCondition,
    expiry: KeyExpiry,
    get: bool,
}

impl SetOptions {
    fn parse(args: &mut Args<'_>, now_ms: u64) -> Result<SetOptions, CmdError> {
        let mut condition = SetCondition::Always;
        let mut keep_ttl = false;
        let mut expire_arg: Option<(&Bytes, u64, bool)> = None;
        let mut get = false;
        while let Some(option) = args.next() {
            let unit = expiry_option(option);
            // As in Redis, an option may be repeated (the last expiry wins); only conflicting
            // options are a syntax error.
            if option.eq_ignore_ascii_case(b"NX") && condition != SetCondition::IfExists {
                condition = SetCondition::IfMissing;
            } else if option.eq_ignore_ascii_case(b"XX") && condition != SetCondition::IfMissing {
                condition = SetCondition::IfExists;
            } else if option.eq_ignore_ascii_case(b"GET") {
                get = true;
            } else if option.eq_ignore_ascii_case(b"KEEPTTL") && expire_arg.is_none() {
                keep_ttl = true;
            } else if let (Some((_, unit_ms, absolute)), Some(value), false) =
                (unit, args.peek(), keep_ttl)
                && expire_arg.is_none_or(|(_, u, a)| (u, a) == (unit_ms, absolute))
            {
                expire_arg = Some((value, unit_ms, absolute));
                args.next();
            } else {
                return Err(CmdError::Syntax);
            }
        }
        // As in Redis, the expiry's value is judged after the syntax of every option.
        let expiry = match (expire_arg, keep_ttl) {
            (Some((value, unit_ms, absolute)), _) => {
                KeyExpiry::At(parse_expiry(value, unit_ms, absolute, now_ms, "set")?)
            }
            (None, true) => KeyExpiry::Keep,
            (None, false) => KeyExpiry::Never,
        };
        Ok(SetOptions {
            condition,
            expiry,
            get,
        })
    }
}

fn set(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let key = args.required()?;
    let raw_value = args.required()?;
    let options = SetOptions::parse(args, ctx.now_ms)?;
    let user = presence_user(ctx, key)?;
    let value = key_value(raw_value)?;
    let room = ctx.shared.memory.room();
    let (applied, old) = store_set(
        ctx,
        key,
        user,
        value,
        options.expiry,
        options.condition,
        room,
    )?;
    if options.get {
        match old {
            Some(old) => ctx.out.bulk(&old),
            None => ctx.out.null(),
        }
    } else if applied {
        ctx.out.ok();
    } else {
        ctx.out.null();
    }
    Ok(())
}

/// Sets the key and publishes Redis's `set` event; with `Room::Full`, a set that would add is
/// refused.
fn store_set(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    user: UserKey<'_>,
    value: KeyValue<'_>,
    expiry: KeyExpiry,
    condition: SetCondition,
    room: Room,
) -> Result<(bool, Option<Vec<u8>>), CmdError> {
    let (applied, old) = ctx
        .shared
        .store
        .set_key(user, value, expiry, condition, room, ctx.now_ms)?;
    if applied {
        ctx.shared
            .keyspace
            .notify(ctx.shared.pubsub, NotifyFlags::STRING, "set", key);
        // Redis follows `set` with `expire` when the key was given a TTL (SET EX, SETEX, ...).
        if let KeyExpiry::At(at_ms) = expiry
            && at_ms > ctx.now_ms
        {
            ctx.shared
                .keyspace
                .notify(ctx.shared.pubsub, NotifyFlags::GENERIC, "expire", key);
        }
    }
    Ok((applied, old))
}

fn get(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let user = presence_user(ctx, args.required()?)?;
    match ctx.shared.store.key_value(user, ctx.now_ms) {
        Some(value) => ctx.out.bulk(&value),
        None => ctx.out.null(),
    }
    Ok(())
}

fn mget(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let keys = args.rest();
    let mut users = Vec::with_capacity(keys.len());
    for key in keys {
        users.push(presence_user(ctx, key)?);
    }
    let values = ctx.shared.store.key_values(&users, ctx.now_ms);
    ctx.out.array(values.len());
    for value in values {
        match value {
            Some(value) => ctx.out.bulk(&value),
            None => ctx.out.null(),
        }
    }
    Ok(())
}

fn set_with_ttl(
    ctx: &mut Ctx<'_>,
    args: &mut Args<'_>,
    unit_ms: u64,
    command: &'static str,
) -> CmdResult {
    let key = args.required()?;
    let ttl = args.required()?;
    let raw_value = args.required()?;
    let at_ms = parse_expiry(ttl, unit_ms, false, ctx.now_ms, command)?;
    let user = presence_user(ctx, key)?;
    let value = key_value(raw_value)?;
    let room = ctx.shared.memory.room();
    store_set(
        ctx,
        key,
        user,
        value,
        KeyExpiry::At(at_ms),
        SetCondition::Always,
        room,
    )?;
    ctx.out.ok();
    Ok(())
}

fn setex(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    set_with_ttl(ctx, args, 1000, "setex")
}

fn psetex(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    set_with_ttl(ctx, args, 1, "psetex")
}

fn setnx(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let key = args.required()?;
    let raw_value = args.required()?;
    let user = presence_user(ctx, key)?;
    let value = key_value(raw_value)?;
    let room = ctx.shared.memory.room();
    let (applied, _) = store_set(
        ctx,
        key,
        user,
        value,
        KeyExpiry::Never,
        SetCondition::IfMissing,
        room,
    )?;
    ctx.out.integer(i64::from(applied));
    Ok(())
}

fn getdel(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let user = presence_user(ctx, args.required()?)?;
    match ctx.shared.store.key_value(user, ctx.now_ms) {
        Some(value) => {
            ctx.shared.store.del_key(user, ctx.now_ms);
            ctx.out.bulk(&value);
        }
        None => ctx.out.null(),
    }
    Ok(())
}

/// `GETEX`'s option: `None` leaves the expiry alone; `Some(None)` is `PERSIST`;
/// `Some(Some(at_ms))` sets it.
fn getex_change(args: &mut Args<'_>, now_ms: u64) -> Result<Option<Option<u64>>, CmdError> {
    let mut persist = false;
    let mut expire_arg: Option<(&Bytes, u64, bool)> = None;
    while let Some(option) = args.next() {
        let unit = expiry_option(option);
        // As in SET, a repeated option is allowed and the last expiry wins.
        if option.eq_ignore_ascii_case(b"PERSIST") && expire_arg.is_none() {
            persist = true;
        } else if let (Some((_, unit_ms, absolute)), Some(value), false) =
            (unit, args.peek(), persist)
            && expire_arg.is_none_or(|(_, u, a)| (u, a) == (unit_ms, absolute))
        {
            expire_arg = Some((value, unit_ms, absolute));
            args.next();
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(match (expire_arg, persist) {
        (Some((value, unit_ms, absolute)), _) => Some(Some(parse_expiry(
            value, unit_ms, absolute, now_ms, "getex",
        )?)),
        (None, true) => Some(None),
        (None, false) => None,
    })
}

fn getex(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let key = args.required()?;
    let change = getex_change(args, ctx.now_ms)?;
    let user = presence_user(ctx, key)?;
    let Some(value) = ctx.shared.store.key_value(user, ctx.now_ms) else {
        ctx.out.null();
        return Ok(());
    };
    if let Some(at_ms) = change {
        let changed = ctx.shared.store.expire_key(
            user,
            at_ms,
            crate::store::ExpireCondition::Always,
            ctx.now_ms,
        );
        // A time already past deleted the key: the store published `del`, as Redis does.
        let event = match at_ms {
            Some(at_ms) if at_ms > ctx.now_ms => Some("expire"),
            Some(_) => None,
            None => Some("persist"),
        };
        if let (true, Some(event)) = (changed, event) {
            ctx.shared
                .keyspace
                .notify(ctx.shared.pubsub, NotifyFlags::GENERIC, event, key);
        }
    }
    ctx.out.bulk(&value);
    Ok(())
}

fn mset(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let all = args.rest();
    if !all.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity("mset"));
    }
    let mut pairs = Vec::with_capacity(all.len() / 2);
    for pair in all.chunks_exact(2) {
        let [key, raw_value] = pair else {
            continue;
        };
        let user = presence_user(ctx, key)?;
        let value = key_value(raw_value)?;
        pairs.push((key, user, value));
    }
    // Past maxmemory, every pair is judged before any is set, so that MSET stays all or
    // nothing; the sets then run with room (a user forgotten by another client in between
    // would be added once, which is not worth a second refusal halfway).
    if ctx.shared.memory.room() == Room::Full
        && pairs
            .iter()
            .any(|(_, user, value)| ctx.shared.store.set_adds(*user, *value))
    {
        return Err(CmdError::OutOfMemory);
    }
    for (key, user, value) in pairs {
        store_set(
            ctx,
            key,
            user,
            value,
            KeyExpiry::Never,
            SetCondition::Always,
            Room::Available,
        )?;
    }
    ctx.out.ok();
    Ok(())
}
