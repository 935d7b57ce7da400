//! The presence commands: HEARTBEAT, MHEARTBEAT, STATUS, MSTATUS, OFFLINE.

use bytes::Bytes;

use super::{ArgSpec, CommandSpec, Ctx, SYNTAX_ERROR, parse_i64, printable};
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
    &["write", "fast"],
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
    &["write"],
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
    &["write", "fast"],
    1,
    "Sets or clears a user's manual status (dnd, invisible, away, busy, none), optionally for a TTL.",
    "O(1)",
    setstatus,
)
.with_arguments(&[USER, arg("status", "string", None, false, false), TTL]);

fn heartbeat(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mut ttl_s = ctx.server.config.default_ttl_s;
    let mut app = None;
    let mut device = None;
    let mut rest = &args[2..];
    while let Some(option) = rest.first() {
        let Some(value) = rest.get(1) else {
            return ctx.out.error(SYNTAX_ERROR);
        };
        if option.eq_ignore_ascii_case(b"TTL") {
            match parse_ttl(value) {
                Ok(t) => ttl_s = t,
                Err(message) => return ctx.out.error(&message),
            }
        } else if option.eq_ignore_ascii_case(b"STATUS") {
            match AppStatus::parse(value) {
                Some(status) => app = Some(status),
                None => {
                    return ctx.out.error(&format!(
                        "ERR invalid status '{}': must be online, away or busy",
                        printable(value, 64)
                    ));
                }
            }
        } else if option.eq_ignore_ascii_case(b"DEVICE") {
            match parse_device(value) {
                Ok(id) => device = Some(id),
                Err(message) => return ctx.out.error(&message),
            }
        } else {
            return ctx.out.error(SYNTAX_ERROR);
        }
        rest = &rest[2..];
    }
    let key = match parse_user(ctx, &args[1]) {
        Some(key) => key,
        None => return,
    };
    match ctx
        .server
        .store
        .heartbeat(key, ttl_s, app, device, ctx.now_ms)
    {
        Ok(came_online) => {
            Stats::add(&ctx.server.stats.heartbeats, 1);
            ctx.out.integer(i64::from(came_online));
        }
        Err(err) => ctx.out.error(&err.message()),
    }
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
    let view = ctx.server.store.view(key, ctx.now_ms);
    Stats::add(&ctx.server.stats.status_lookups, 1);
    write_status(ctx.out, view);
}

fn mstatus(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let Some(keys) = parse_users(ctx, &args[1..]) else {
        return;
    };
    let views = ctx.server.store.view_many(&keys, ctx.now_ms);
    Stats::add(&ctx.server.stats.status_lookups, views.len() as u64);
    ctx.out.array(views.len());
    for view in views {
        write_status(ctx.out, view);
    }
}

fn offline(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let device = match parse_device_option(args) {
        Ok(device) => device,
        Err(message) => return ctx.out.error(&message),
    };
    let Some(key) = parse_user(ctx, &args[1]) else {
        return;
    };
    let was_online = ctx.server.store.offline(key, device, ctx.now_ms);
    Stats::add(&ctx.server.stats.logouts, 1);
    ctx.out.integer(i64::from(was_online));
}

fn disconnect(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let device = match parse_device_option(args) {
        Ok(device) => device,
        Err(message) => return ctx.out.error(&message),
    };
    let Some(key) = parse_user(ctx, &args[1]) else {
        return;
    };
    let grace_ms = ctx.server.config.offline_grace_s * 1000;
    let started = ctx
        .server
        .store
        .disconnect(key, device, grace_ms, ctx.now_ms);
    ctx.out.integer(i64::from(started));
}

fn setstatus(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let manual = match ManualStatus::parse(&args[2]) {
        Some(manual) => manual,
        None => {
            return ctx.out.error(&format!(
                "ERR invalid status '{}': must be dnd, invisible, away, busy or none",
                printable(&args[2], 64)
            ));
        }
    };
    let ttl_s = match &args[3..] {
        [] => None,
        [option, value] if option.eq_ignore_ascii_case(b"TTL") => match parse_ttl(value) {
            Ok(t) => Some(t),
            Err(message) => return ctx.out.error(&message),
        },
        _ => return ctx.out.error(SYNTAX_ERROR),
    };
    let Some(key) = parse_user(ctx, &args[1]) else {
        return;
    };
    ctx.server.store.set_status(key, manual, ttl_s, ctx.now_ms);
    ctx.out.ok();
}

/// `user [DEVICE id]`, the tail of OFFLINE and DISCONNECT.
fn parse_device_option(args: &[Bytes]) -> Result<Option<&[u8]>, String> {
    match &args[2..] {
        [] => Ok(None),
        [option, value] if option.eq_ignore_ascii_case(b"DEVICE") => parse_device(value).map(Some),
        _ => Err(SYNTAX_ERROR.to_string()),
    }
}

fn parse_device(id: &[u8]) -> Result<&[u8], String> {
    if id.is_empty() || id.len() > DEVICE_ID_LEN_MAX {
        return Err(format!(
            "ERR invalid device id: must be 1 to {DEVICE_ID_LEN_MAX} bytes"
        ));
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

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use crate::clock;
    use crate::config::Config;
    use crate::resp::{DecodeLimits, Protocol, ReplyBuf, RequestDecoder};
    use crate::server::Server;
    use crate::session::Session;

    /// Decoding, running and answering HEARTBEATs of users already online allocates nothing:
    /// a counting global allocator sees zero allocations over 10,000 of them, end to end
    /// (request bytes in, reply bytes out), after one warm-up pass brought the users online.
    #[test]
    fn heartbeat_path_does_not_allocate() {
        let addr = "127.0.0.1:6379".parse().expect("address");
        let (server, _fanout) =
            Server::build(Config::for_tests(), addr, clock::now_ms()).expect("server");
        let client = server
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
            while replies < 10_000
                && decoder
                    .decode_into(input, &limits, &mut args)
                    .expect("valid requests")
            {
                crate::cmd::execute(&server, &mut session, &args, out, clock::now_ms());
                replies += 1;
            }
            replies
        };
        // One input buffer for both passes: the first split of a fresh buffer allocates its
        // shared header once, which is per connection, not per request.
        let mut input = BytesMut::from(&batch.repeat(2)[..]);
        assert_eq!(run(&mut input, &mut out), 10_000);
        out.buf.clear();
        out.buf.reserve(64 * 1024);
        let before = crate::alloc_count::allocations();
        let replies = run(&mut input, &mut out);
        let allocated = crate::alloc_count::allocations() - before;
        assert_eq!(replies, 10_000);
        assert_eq!(&out.buf[..4], b":0\r\n", "users were already online");
        assert_eq!(allocated, 0, "allocations on the heartbeat path");
    }
}
