//! Replication commands: what a follower sends its leader (`REPLCONF`, `PSYNC`, `SYNC`), and
//! what an operator or Sentinel sends to change or read a role (`REPLICAOF`, `SLAVEOF`,
//! `ROLE`). The link itself is `replication::{leader, follower}`.

use super::{Args, CmdError, CmdResult, CommandSpec, Ctx};
use crate::replication::Role;
use crate::session::Flow;

const fn replication_command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "server", summary, handler).with_acl(&[
        "@admin",
        "@slow",
        "@dangerous",
    ])
}

pub const REPLCONF: CommandSpec = replication_command(
    "replconf",
    -1,
    &["admin", "noscript", "loading", "stale", "allow_busy"],
    "An internal command for configuring the replication stream.",
    replconf,
)
.with_since("3.0.0");
pub const PSYNC: CommandSpec = replication_command(
    "psync",
    -3,
    &["admin", "noscript", "no_async_loading", "no_multi"],
    "An internal command used in replication.",
    psync,
)
.with_since("2.8.0");
pub const SYNC: CommandSpec = replication_command(
    "sync",
    1,
    &["admin", "noscript", "no_async_loading", "no_multi"],
    "An internal command used in replication.",
    sync,
);
pub const REPLICAOF: CommandSpec = replication_command(
    "replicaof",
    3,
    &["admin", "noscript", "stale", "no_async_loading"],
    "Configures a server as a follower of another, or promotes it to be the leader.",
    replicaof,
)
.with_since("5.0.0");
pub const SLAVEOF: CommandSpec = replication_command(
    "slaveof",
    3,
    &["admin", "noscript", "stale", "no_async_loading"],
    "Sets a server as a follower of another, or promotes it (deprecated: REPLICAOF).",
    replicaof,
);
pub const ROLE: CommandSpec = replication_command(
    "role",
    1,
    &["noscript", "loading", "stale", "fast"],
    "Returns the replication role.",
    role,
)
.with_acl(&["@admin", "@fast", "@dangerous"])
.with_since("2.8.12");
pub const WAIT: CommandSpec = CommandSpec::new(
    "wait",
    3,
    &["noscript"],
    "generic",
    "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.",
    wait,
)
.with_acl(&["@slow", "@connection"])
.with_since("3.0.0");

/// `WAIT numreplicas timeout_ms`: the number of followers that acknowledged every change made
/// so far, once at least `numreplicas` have or `timeout_ms` passed (0: no timeout). The
/// changes made so far are drained into the stream first, so what this connection wrote is
/// in what the followers acknowledge (it waits for everything up to now, which includes this
/// connection's writes: a client that wrote nothing waits for the followers to catch up). The
/// followers are asked to acknowledge at once (`REPLCONF GETACK`). Inside a transaction it
/// answers at once, as Redis's does. The waiting is the connection's (`Flow::WaitReplicas`):
/// it stops reading, no thread blocks.
fn wait(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let replication = ctx.shared.replication;
    if replication.is_follower() {
        return Err(CmdError::WaitOnReplica);
    }
    let numreplicas = args.integer()?;
    let timeout_ms = match crate::resp::parse_integer(args.required()?) {
        Some(ms) if ms >= 0 => ms as u64,
        Some(_) => return Err(CmdError::TimeoutNegative),
        None => return Err(CmdError::TimeoutNotInteger),
    };
    replication.drain_all(ctx.shared.store, ctx.now_ms);
    let offset = replication.end_offset();
    let acked = replication.acked_count(offset);
    if ctx.session.in_exec || numreplicas <= 0 || acked >= numreplicas as u64 {
        ctx.out.integer(acked as i64);
        return Ok(());
    }
    replication.request_acks();
    ctx.flow = Flow::WaitReplicas {
        offset,
        count: numreplicas as u64,
        until_ms: (timeout_ms > 0).then(|| ctx.now_ms.saturating_add(timeout_ms)),
    };
    Ok(())
}

/// `REPLCONF listening-port <port> | capa <capability> ... | ack <offset> | getack *`: the
/// handshake's options, remembered for this connection's `PSYNC`.
fn replconf(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if !args.remaining().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    while let Some(option) = args.next() {
        let value = args.required()?;
        if option.eq_ignore_ascii_case(b"listening-port") {
            ctx.session.replica.listening_port = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or(CmdError::NotAnInteger)?;
        } else if option.eq_ignore_ascii_case(b"capa") {
            if value.eq_ignore_ascii_case(crate::replication::stream::CAPA.as_bytes()) {
                ctx.session.replica.reads_presenced_stream = true;
            }
        } else if option.eq_ignore_ascii_case(b"ack") || option.eq_ignore_ascii_case(b"getack") {
            // ACKs are read by the link once it streams; before that there is nothing to do.
            return Ok(());
        } else if option.eq_ignore_ascii_case(b"ip-address") {
            // What INFO's slaveN:ip= and ROLE show for it, as in Redis (a follower behind a
            // NAT or a proxy names the address the others should use).
            let ip = std::str::from_utf8(value)
                .ok()
                .filter(|ip| !ip.is_empty() && ip.len() <= 255)
                .ok_or(CmdError::Syntax)?;
            ctx.session.replica.announced_ip = Some(ip.to_string());
        } else if !option.eq_ignore_ascii_case(b"rdb-only") {
            return Err(CmdError::UnrecognizedReplconfOption(super::printable(
                option, 64,
            )));
        }
    }
    ctx.out.ok();
    Ok(())
}

/// `PSYNC <replid> <offset>`: this connection becomes the follower's link once the reply so
/// far is written (`Flow::Replicate`); `replication::leader::feed` answers FULLRESYNC or
/// CONTINUE.
fn psync(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let replid = String::from_utf8_lossy(args.required()?).into_owned();
    let offset = args.integer()?;
    begin_sync(ctx, replid, offset)
}

/// `SYNC`: the old full-sync request, a PSYNC that continues nothing.
fn sync(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    begin_sync(ctx, "?".to_string(), -1)
}

fn begin_sync(ctx: &mut Ctx<'_>, replid: String, offset: i64) -> CmdResult {
    if !ctx.session.replica.reads_presenced_stream {
        return Err(CmdError::ReplicaUnsupported);
    }
    ctx.session.replica.psync = Some((replid, offset));
    ctx.flow = Flow::Replicate;
    Ok(())
}

/// `REPLICAOF <host> <port>` follows that leader; `REPLICAOF NO ONE` makes this process the
/// leader. The link is started (or stopped) by the replication supervisor, watching the role.
fn replicaof(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let host = args.required()?;
    let port = args.required()?;
    let replication = ctx.shared.replication;
    if host.eq_ignore_ascii_case(b"no") && port.eq_ignore_ascii_case(b"one") {
        replication.lead();
        ctx.out.ok();
        return Ok(());
    }
    let port: u16 = std::str::from_utf8(port)
        .ok()
        .and_then(|p| p.parse().ok())
        .filter(|&p| p > 0)
        .ok_or(CmdError::InvalidMasterPort)?;
    let host = String::from_utf8_lossy(host).into_owned();
    if replication.role()
        == (Role::Follower {
            host: host.clone(),
            port,
        })
    {
        ctx.out.simple("OK Already connected to specified master");
        return Ok(());
    }
    let was_leader = !replication.is_follower();
    replication.follow(host, port);
    if was_leader {
        // Writes are refused from here on; the changes not yet shipped go into this
        // process's stream now, so its offset tells the new leader whether it holds them
        // (PSYNC continues only a stream the new leader has, else it syncs in full).
        replication.drain_all(ctx.shared.store, ctx.now_ms);
    }
    ctx.out.ok();
    Ok(())
}

/// `ROLE`, in Redis's shapes: `[master, offset, [[ip, port, offset], ...]]` or
/// `[slave, host, port, state, offset]`.
fn role(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    let replication = ctx.shared.replication;
    let offset = replication.end_offset() as i64;
    match replication.role() {
        Role::Leader => {
            let followers = replication.followers();
            ctx.out.array(3);
            ctx.out.bulk(b"master");
            ctx.out.integer(offset);
            ctx.out.array(followers.len());
            for follower in followers {
                ctx.out.array(3);
                ctx.out.bulk(follower.ip.as_bytes());
                ctx.out.bulk(follower.listening_port.to_string().as_bytes());
                ctx.out.bulk(follower.ack_offset.to_string().as_bytes());
            }
        }
        Role::Follower { host, port } => {
            let link = replication.link();
            let state: &[u8] = if link.up {
                b"connected"
            } else if link.sync_in_progress {
                b"sync"
            } else {
                b"connect"
            };
            ctx.out.array(5);
            ctx.out.bulk(b"slave");
            ctx.out.bulk(host.as_bytes());
            ctx.out.integer(i64::from(port));
            ctx.out.bulk(state);
            ctx.out.integer(if link.up { offset } else { -1 });
        }
    }
    Ok(())
}
