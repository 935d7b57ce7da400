//! The presence commands: HEARTBEAT, MHEARTBEAT, STATUS, MSTATUS, OFFLINE, DISCONNECT,
//! SETSTATUS.
//!
//! Past `maxmemory` the commands that may add a user (flagged `denyoom`) hand the store
//! `Room::Full`, and it refuses only the users it does not track: a known user's heartbeat,
//! whether they are online or not, goes on.

use bytes::Bytes;

use super::{ArgSpec, Args, CmdError, CmdResult, CommandSpec, Ctx, printable};
use crate::limits::{TTL_S_MAX, TTL_S_MIN};
use crate::resp::{Protocol, ReplyBuf};
use crate::stats::Stats;
use crate::store::{AppStatus, DEVICE_ID_LEN_MAX, ManualStatus, UserKey, View};

const PRESENCE_ACL: &[&str] = &["@presence", "@fast"];

const fn arg(
    name: &'static str,
    kind: &'static str,
    token: Option<&'static str>,
    optional: bool,
    multiple: bool,
) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        token,
        optional,
        multiple,
    }
}

/// A presence command: its user is its key (the first argument; with `last_key` -1, every
/// argument), so cluster-aware clients route it like a key.
const fn presence_command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    last_key: i32,
    summary: &'static str,
    complexity: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "presence", summary, handler)
        .with_keys(1, last_key, 1)
        .with_acl(if last_key < 0 {
            &["@presence"]
        } else {
            PRESENCE_ACL
        })
        .with_since("0.1.0")
        .with_complexity(complexity)
}

const USER: ArgSpec = arg("user", "key", None, false, false);
const USERS: ArgSpec = arg("user", "key", None, false, true);
const TTL: ArgSpec = arg("seconds", "integer", Some("TTL"), true, false);
const DEVICE: ArgSpec = arg("id", "string", Some("DEVICE"), true, false);

pub const HEARTBEAT: CommandSpec = presence_command(
    "heartbeat",
    -2,
    &["write", "denyoom", "fast"],
    1,
    "Marks a user online now and refreshes their last-seen time. Replies 1 if this brought them online.",
    "O(1)",
    heartbeat,
)
.with_arguments(&[
        USER,
        TTL,
        arg("status", "string", Some("STATUS"), true, false),
        DEVICE,
    ]);

pub const MHEARTBEAT: CommandSpec = presence_command(
    "mheartbeat",
    -2,
    &["write", "denyoom"],
    -1,
    "Heartbeats many users at the default TTL. Replies with how many came online.",
    "O(N) where N is the number of users",
    mheartbeat,
)
.with_arguments(&[USERS]);

pub const STATUS: CommandSpec = presence_command(
    "status",
    2,
    &["readonly", "fast"],
    1,
    "Returns a user's state (online or offline) and last-seen time in Unix milliseconds.",
    "O(1)",
    status,
)
.with_arguments(&[USER]);

pub const MSTATUS: CommandSpec = presence_command(
    "mstatus",
    -2,
    &["readonly"],
    -1,
    "Returns the state and last-seen time of many users, in request order.",
    "O(N) where N is the number of users",
    mstatus,
)
.with_arguments(&[USERS]);

pub const OFFLINE: CommandSpec = presence_command(
    "offline",
    -2,
    &["write", "fast"],
    1,
    "Logs a user (or one device) out now, keeping their last-seen time. Replies 1 if they were online.",
    "O(1)",
    offline,
)
.with_arguments(&[USER, DEVICE]);

pub const DISCONNECT: CommandSpec = presence_command(
    "disconnect",
    -2,
    &["write", "fast"],
    1,
    "A user's (or device's) connection dropped: offline after the grace period unless a heartbeat comes first.",
    "O(1)",
    disconnect,
)
.with_arguments(&[USER, DEVICE]);

pub const SETSTATUS: CommandSpec = presence_command(
    "setstatus",
    -3,
    &["write", "denyoom", "fast"],
    1,
    "Sets or clears a user's manual status (dnd, invisible, away, busy, none), optionally for a TTL.",
    "O(1)",
    setstatus,
)
.with_arguments(&[USER, arg("status", "string", None, false, false), TTL]);

fn heartbeat(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let id = args.required()?;
    let mut ttl_s = ctx.shared.config.default_ttl_s;
    let mut app = None;
    let mut device = None;
    while let Some(option) = args.next() {
        let value = args.value()?;
        if option.eq_ignore_ascii_case(b"TTL") {
            ttl_s = parse_ttl(value)?;
        } else if option.eq_ignore_ascii_case(b"STATUS") {
            let status = AppStatus::parse(value)
                .ok_or_else(|| CmdError::InvalidAppStatus(printable(value, 64)))?;
            app = Some(status);
        } else if option.eq_ignore_ascii_case(b"DEVICE") {
            device = Some(parse_device(value)?);
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let key = ctx.shared.store.parse(id)?;
    let room = ctx.shared.memory.room();
    let came_online = ctx
        .shared
        .store
        .heartbeat(key, ttl_s, app, device, room, ctx.now_ms)?;
    Stats::add(&ctx.shared.stats.heartbeats, 1);
    ctx.out.integer(i64::from(came_online));
    Ok(())
}

/// Past `maxmemory`, the users the store tracks are still heartbeated and the others left
/// out; if any was, the reply is the OOM error (a retry is harmless: heartbeats are
/// idempotent). Refusing the whole batch, as Redis refuses a `denyoom` command, would let a
/// full server declare every known user of a gateway offline.
fn mheartbeat(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let keys = parse_users(ctx, args.rest())?;
    let ttl_s = ctx.shared.config.default_ttl_s;
    let room = ctx.shared.memory.room();
    let batch = ctx
        .shared
        .store
        .heartbeat_many(&keys, ttl_s, room, ctx.now_ms);
    Stats::add(
        &ctx.shared.stats.heartbeats,
        keys.len() as u64 - batch.refused_count,
    );
    if batch.refused_count > 0 {
        return Err(CmdError::OutOfMemory);
    }
    ctx.out.integer(batch.came_online_count as i64);
    Ok(())
}

fn status(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let key = ctx.shared.store.parse(args.required()?)?;
    let view = ctx.shared.store.view(key, ctx.now_ms);
    Stats::add(&ctx.shared.stats.status_lookups, 1);
    write_status(ctx.out, view);
    Ok(())
}

fn mstatus(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let keys = parse_users(ctx, args.rest())?;
    let views = ctx.shared.store.view_many(&keys, ctx.now_ms);
    Stats::add(&ctx.shared.stats.status_lookups, views.len() as u64);
    ctx.out.array(views.len());
    for view in views {
        write_status(ctx.out, view);
    }
    Ok(())
}

fn offline(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let id = args.required()?;
    let device = parse_device_option(args)?;
    let key = ctx.shared.store.parse(id)?;
    let was_online = ctx.shared.store.offline(key, device, ctx.now_ms);
    Stats::add(&ctx.shared.stats.logouts, 1);
    ctx.out.integer(i64::from(was_online));
    Ok(())
}

fn disconnect(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let id = args.required()?;
    let device = parse_device_option(args)?;
    let key = ctx.shared.store.parse(id)?;
    let grace_ms = ctx.shared.config.offline_grace_s * 1000;
    let started = ctx
        .shared
        .store
        .disconnect(key, device, grace_ms, ctx.now_ms);
    ctx.out.integer(i64::from(started));
    Ok(())
}

fn setstatus(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let id = args.required()?;
    let word = args.required()?;
    let manual = ManualStatus::parse(word)
        .ok_or_else(|| CmdError::InvalidManualStatus(printable(word, 64)))?;
    let ttl_s = match args.remaining() {
        0 => None,
        2 if args.eat(b"TTL") => Some(parse_ttl(args.required()?)?),
        _ => return Err(CmdError::Syntax),
    };
    let key = ctx.shared.store.parse(id)?;
    let room = ctx.shared.memory.room();
    ctx.shared
        .store
        .set_status(key, manual, ttl_s, room, ctx.now_ms)?;
    ctx.out.ok();
    Ok(())
}

/// `[DEVICE id]`, the tail of OFFLINE and DISCONNECT.
fn parse_device_option<'a>(args: &mut Args<'a>) -> Result<Option<&'a [u8]>, CmdError> {
    match args.remaining() {
        0 => Ok(None),
        2 if args.eat(b"DEVICE") => parse_device(args.required()?).map(Some),
        _ => Err(CmdError::Syntax),
    }
}

fn parse_device(id: &[u8]) -> Result<&[u8], CmdError> {
    if id.is_empty() || id.len() > DEVICE_ID_LEN_MAX {
        return Err(CmdError::InvalidDeviceId);
    }
    Ok(id)
}

/// RESP2: `[state, last_seen_ms]`; RESP3: `{state: ..., last_seen_ms: ...}`. A user never
/// seen has a null last-seen.
fn write_status(out: &mut ReplyBuf, view: View) {
    let state = view.state.as_str().as_bytes();
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
    match view.last_seen_ms {
        Some(ms) => out.integer(ms as i64),
        None => out.null(),
    }
}

/// Parses every ID before touching the store, so a bad ID anywhere changes nothing.
fn parse_users<'a>(ctx: &Ctx<'_>, ids: &'a [Bytes]) -> Result<Vec<UserKey<'a>>, CmdError> {
    let mut keys = Vec::with_capacity(ids.len());
    for id in ids {
        keys.push(ctx.shared.store.parse(id)?);
    }
    Ok(keys)
}

fn parse_ttl(arg: &[u8]) -> Result<u64, CmdError> {
    match crate::resp::parse_integer(arg) {
        Some(t) if (TTL_S_MIN as i64..=TTL_S_MAX as i64).contains(&t) => Ok(t as u64),
        _ => Err(CmdError::InvalidTtl(printable(arg, 64))),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use crate::clock;
    use crate::config::Config;
    use crate::resp::{DecodeLimits, Protocol, ReplyBuf, RequestDecoder};
    use crate::services::Services;
    use crate::session::Session;

    /// Decoding, running and answering HEARTBEATs of users already online allocates nothing:
    /// a counting global allocator sees zero allocations over 10,000 of them, end to end
    /// (request bytes in, reply bytes out), after one warm-up pass brought the users online.
    #[test]
    fn heartbeat_path_does_not_allocate() {
        let addr = "127.0.0.1:6379".parse().expect("address");
        let (services, _fanout) =
            Services::build(Config::for_tests(), addr, clock::now_ms()).expect("services");
        let shared = services.shared();
        let client = services
            .clients
            .register(addr, addr, clock::now_ms(), 10)
            .expect("room for a client");
        let mut session = Session::new(client, false);
        let limits = DecodeLimits {
            bulk_len_max: 1 << 20,
            args_max: 1 << 20,
            authenticated: true,
        };
        let mut batch = Vec::new();
        for i in 0..10_000u32 {
            let id = (i % 1000).to_string();
            batch.extend(format!("*2\r\n$9\r\nHEARTBEAT\r\n${}\r\n{id}\r\n", id.len()).bytes());
        }
        let mut decoder = RequestDecoder::new();
        let mut args = Vec::with_capacity(8);
        let mut out = ReplyBuf::new(Protocol::Resp2);
        let mut run = |input: &mut BytesMut, out: &mut ReplyBuf| {
            let mut replies = 0;
            let mut meter = crate::cmd::Meter::start(&services.stats);
            while replies < 10_000
                && decoder
                    .decode_into(input, &limits, &mut args)
                    .expect("valid requests")
            {
                crate::cmd::execute(
                    &shared,
                    &mut session,
                    &mut meter,
                    &args,
                    out,
                    clock::now_ms(),
                );
                replies += 1;
            }
            replies
        };
        // One input buffer for every pass: the first split of a fresh buffer allocates its
        // shared header once, which is per connection, not per request.
        let mut input = BytesMut::from(&batch.repeat(3)[..]);
        assert_eq!(run(&mut input, &mut out), 10_000);
        out.buf.clear();
        out.buf.reserve(64 * 1024);
        let before = crate::alloc_count::allocations();
        let replies = run(&mut input, &mut out);
        let allocated = crate::alloc_count::allocations() - before;
        assert_eq!(replies, 10_000);
        assert_eq!(&out.buf[..4], b":0\r\n", "users were already online");
        assert_eq!(allocated, 0, "allocations on the heartbeat path");

        // Past maxmemory, known users' heartbeats are not refused and still allocate nothing.
        services.memory.set_maxmemory_bytes(1);
        out.buf.clear();
        let before = crate::alloc_count::allocations();
        let replies = run(&mut input, &mut out);
        let allocated = crate::alloc_count::allocations() - before;
        assert_eq!(replies, 10_000);
        assert!(
            out.buf.chunks(4).all(|reply| reply == b":0\r\n"),
            "every known user heartbeated, none refused"
        );
        assert_eq!(
            allocated, 0,
            "allocations on the heartbeat path past maxmemory"
        );
        let row = crate::cmd::command_rows()
            .iter()
            .position(|spec| spec.name == "heartbeat")
            .expect("a heartbeat row");
        let counted = services.stats.commands.totals()[row];
        assert_eq!(
            (counted.calls, counted.failed),
            (30_000, 0),
            "INFO commandstats counts every heartbeat"
        );
    }
}
