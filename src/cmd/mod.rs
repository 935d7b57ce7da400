//! The command table and dispatch: name lookup, arity, authentication, subcommands, and the
//! one place where a refused command's `CmdError` becomes its reply.
//!
//! One file per command family. A handler reads its arguments through an `Args` cursor, uses
//! the shared components its `Ctx` lends it (never the server: this module does not know the
//! accept loop, listeners or timers exist), writes its reply, or returns a `CmdError` having
//! written nothing.

mod args;
mod client;
mod connection;
mod error;
mod info;
mod introspection;
mod keys;
mod meter;
mod presence;
mod pubsub;
mod replication;
mod server_admin;
mod slowlog;
mod strings;
mod transaction;

use std::sync::OnceLock;

use bytes::Bytes;
use hashbrown::HashMap;

pub use args::Args;
pub use error::{CmdError, printable};
pub use meter::Meter;
pub use pubsub::unsubscribe_all;
pub use transaction::{abandon as abandon_transaction, needs_exclusive};

use crate::clients::CloseReason;
use crate::resp::ReplyBuf;
use crate::services::Shared;
use crate::session::{Flow, ReplyMode, Session};

/// What a handler works with: the shared components it is lent (never the server), this
/// connection's session and output, and the time the batch of requests started.
pub struct Ctx<'a> {
    pub shared: Shared<'a>,
    pub session: &'a mut Session,
    pub out: &'a mut ReplyBuf,
    pub now_ms: u64,
    pub flow: Flow,
    /// What times and counts this batch's commands (an `EXEC` hands it to what it runs).
    pub meter: &'a mut Meter,
    /// Bit `i` set: argument `i` is a secret the slow log shows as `(redacted)` (`redact`).
    pub redacted_args: u64,
}

impl Ctx<'_> {
    /// Asks the connection to close once this reply is written.
    pub fn close(&mut self, reason: CloseReason) {
        self.flow = Flow::Close(reason);
    }

    /// Marks argument `position` (0 is the command's name) as a secret: a password never
    /// reaches the slow log. Handlers mark arguments as they parse them, as Redis's do, so a
    /// request refused before its secret was reached is logged as sent. Only the first
    /// `SLOWLOG_ARGS_MAX` arguments are ever logged, so positions past 63 need no mark.
    pub fn redact(&mut self, position: usize) {
        if position < 64 {
            self.redacted_args |= 1 << position;
        }
    }
}

pub type CmdResult = Result<(), CmdError>;

type Handler = fn(&mut Ctx<'_>, &mut Args<'_>) -> CmdResult;

/// One command as `COMMAND INFO` and `COMMAND DOCS` describe it.
pub struct CommandSpec {
    /// Lower-case name; for a subcommand, `parent|sub`.
    pub name: &'static str,
    /// Redis's convention: N means exactly N arguments counting the name, -N at least N.
    pub arity: i32,
    pub flags: &'static [&'static str],
    pub first_key: i32,
    pub last_key: i32,
    pub key_step: i32,
    pub acl_categories: &'static [&'static str],
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    pub complexity: &'static str,
    pub handler: Handler,
    pub subcommands: &'static [CommandSpec],
    /// What `COMMAND DOCS` lists as arguments (redis-cli shows them as hints).
    pub arguments: &'static [ArgSpec],
}

/// One argument as `COMMAND DOCS` describes it.
pub struct ArgSpec {
    pub name: &'static str,
    /// Redis's argument types: `key`, `string`, `integer`, `oneof`, ...
    pub kind: &'static str,
    /// The keyword that introduces the argument (`TTL` in `TTL seconds`).
    pub token: Option<&'static str>,
    pub optional: bool,
    pub multiple: bool,
}

impl CommandSpec {
    /// A command with no keys and Redis's defaults for the rest; the `with_*` methods below
    /// fill in what differs. `const`, so the whole table is built at compile time.
    pub const fn new(
        name: &'static str,
        arity: i32,
        flags: &'static [&'static str],
        group: &'static str,
        summary: &'static str,
        handler: Handler,
    ) -> CommandSpec {
        CommandSpec {
            name,
            arity,
            flags,
            first_key: 0,
            last_key: 0,
            key_step: 0,
            acl_categories: &[],
            group,
            since: "1.0.0",
            summary,
            complexity: "O(1)",
            handler,
            subcommands: &[],
            arguments: &[],
        }
    }

    /// A container command (`CLIENT`, `CONFIG`, ...): only its subcommands run; the
    /// dispatcher answers a container called alone or with an unknown subcommand.
    pub const fn container(
        name: &'static str,
        group: &'static str,
        since: &'static str,
        summary: &'static str,
        subcommands: &'static [CommandSpec],
    ) -> CommandSpec {
        CommandSpec {
            acl_categories: &["@slow"],
            since,
            complexity: "Depends on subcommand.",
            subcommands,
            ..CommandSpec::new(name, -2, &[], group, summary, |_, _| Ok(()))
        }
    }

    pub const fn with_keys(self, first_key: i32, last_key: i32, key_step: i32) -> CommandSpec {
        CommandSpec {
            first_key,
            last_key,
            key_step,
            ..self
        }
    }

    pub const fn with_acl(self, acl_categories: &'static [&'static str]) -> CommandSpec {
        CommandSpec {
            acl_categories,
            ..self
        }
    }

    pub const fn with_since(self, since: &'static str) -> CommandSpec {
        CommandSpec { since, ..self }
    }

    pub const fn with_complexity(self, complexity: &'static str) -> CommandSpec {
        CommandSpec { complexity, ..self }
    }

    pub const fn with_subcommands(self, subcommands: &'static [CommandSpec]) -> CommandSpec {
        CommandSpec {
            subcommands,
            ..self
        }
    }

    pub const fn with_arguments(self, arguments: &'static [ArgSpec]) -> CommandSpec {
        CommandSpec { arguments, ..self }
    }

    fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    fn allowed_before_auth(&self) -> bool {
        self.flags.contains(&"no_auth")
    }

    /// Redis's `denyoom`: the command may make the store hold more (a user, a value). Outside
    /// a transaction each such command asks the store whether this call would add
    /// (`store::Room`); an `EXEC` past `maxmemory` whose queue holds one is refused whole.
    pub fn may_add(&self) -> bool {
        self.flags.contains(&"denyoom")
    }

    /// The name after `|` for a subcommand.
    pub fn short_name(&self) -> &'static str {
        self.name.rsplit('|').next().unwrap_or(self.name)
    }
}

/// Every top-level command, in the order `COMMAND` lists them.
pub fn commands() -> &'static [CommandSpec] {
    COMMANDS
}

static COMMANDS: &[CommandSpec] = &[
    presence::HEARTBEAT,
    presence::MHEARTBEAT,
    presence::STATUS,
    presence::MSTATUS,
    presence::OFFLINE,
    presence::DISCONNECT,
    presence::SETSTATUS,
    connection::PING,
    connection::ECHO,
    connection::HELLO,
    connection::AUTH,
    connection::SELECT,
    connection::QUIT,
    connection::RESET,
    strings::SET,
    strings::GET,
    strings::MGET,
    strings::SETEX,
    strings::PSETEX,
    strings::SETNX,
    strings::GETDEL,
    strings::GETEX,
    strings::MSET,
    keys::EXISTS,
    keys::DEL,
    keys::UNLINK,
    keys::TTL,
    keys::PTTL,
    keys::EXPIRETIME,
    keys::PEXPIRETIME,
    keys::EXPIRE,
    keys::PEXPIRE,
    keys::EXPIREAT,
    keys::PEXPIREAT,
    keys::PERSIST,
    keys::TYPE,
    keys::SCAN,
    keys::KEYS,
    keys::LPUSH,
    keys::RPUSH,
    keys::LRANGE,
    keys::HSET,
    keys::HGET,
    keys::HGETALL,
    keys::SADD,
    keys::SMEMBERS,
    keys::ZADD,
    transaction::MULTI,
    transaction::EXEC,
    transaction::DISCARD,
    transaction::WATCH,
    transaction::UNWATCH,
    pubsub::SUBSCRIBE,
    pubsub::UNSUBSCRIBE,
    pubsub::PSUBSCRIBE,
    pubsub::PUNSUBSCRIBE,
    pubsub::PUBLISH,
    pubsub::SSUBSCRIBE,
    pubsub::SUNSUBSCRIBE,
    pubsub::SPUBLISH,
    pubsub::PUBSUB,
    client::CLIENT,
    introspection::COMMAND,
    server_admin::INFO,
    server_admin::DBSIZE,
    server_admin::CONFIG,
    server_admin::TIME,
    replication::REPLCONF,
    replication::PSYNC,
    replication::SYNC,
    replication::REPLICAOF,
    replication::SLAVEOF,
    replication::ROLE,
    replication::WAIT,
    server_admin::FLUSHALL,
    server_admin::FLUSHDB,
    server_admin::SHUTDOWN,
    server_admin::SAVE,
    server_admin::BGSAVE,
    server_admin::LASTSAVE,
    server_admin::MEMORY,
    server_admin::LATENCY,
    slowlog::SLOWLOG,
];

/// A command as the dispatcher finds it: its spec and its row in the per-command statistics
/// (`INFO commandstats`).
#[derive(Clone, Copy)]
struct Entry {
    spec: &'static CommandSpec,
    row: usize,
}

/// Rows are numbered in table order, each command followed by its subcommands: a
/// subcommand's row is its parent's plus one plus its place among the parent's subcommands.
fn table() -> &'static HashMap<&'static str, Entry> {
    static TABLE: OnceLock<HashMap<&'static str, Entry>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut row = 0;
        let table = COMMANDS
            .iter()
            .map(|spec| {
                let entry = Entry { spec, row };
                row += 1 + spec.subcommands.len();
                (spec.name, entry)
            })
            .collect();
        assert!(
            row <= crate::limits::COMMAND_ROWS_MAX,
            "{row} commands and subcommands: raise COMMAND_ROWS_MAX"
        );
        table
    })
}

/// Every command and subcommand in the order of their statistics rows: what names the rows of
/// `metrics::Metrics::commands`.
pub fn command_rows() -> &'static [&'static CommandSpec] {
    static ROWS: OnceLock<Vec<&'static CommandSpec>> = OnceLock::new();
    ROWS.get_or_init(|| {
        COMMANDS
            .iter()
            .flat_map(|spec| std::iter::once(spec).chain(spec.subcommands))
            .collect()
    })
}

/// Case-insensitive lookup without allocating: command names are short ASCII words.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    lookup_entry(name).map(|entry| entry.spec)
}

fn lookup_entry(name: &[u8]) -> Option<Entry> {
    let mut lower = [0u8; 32];
    let lower = lower.get_mut(..name.len())?;
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    let name = std::str::from_utf8(lower).ok()?;
    table().get(name).copied()
}

fn lookup_subcommand(parent: &'static CommandSpec, name: &[u8]) -> Option<&'static CommandSpec> {
    parent
        .subcommands
        .iter()
        .find(|s| s.short_name().as_bytes().eq_ignore_ascii_case(name))
}

fn lookup_subcommand_entry(parent: Entry, name: &[u8]) -> Option<Entry> {
    let place = parent
        .spec
        .subcommands
        .iter()
        .position(|s| s.short_name().as_bytes().eq_ignore_ascii_case(name))?;
    Some(Entry {
        spec: &parent.spec.subcommands[place],
        row: parent.row + 1 + place,
    })
}

/// Runs one request and writes its reply, timing and counting it with `meter`. Returns what
/// the connection should do next and the name of the command that ran (for `CLIENT LIST`).
pub fn execute(
    shared: &Shared<'_>,
    session: &mut Session,
    meter: &mut Meter,
    args: &[Bytes],
    out: &mut ReplyBuf,
    now_ms: u64,
) -> (Flow, Option<&'static str>) {
    let mode_before = session.reply_mode;
    let written_before = out.len();
    let ran = dispatch(shared, session, meter, args, out, now_ms);
    // CLIENT REPLY OFF|SKIP: the reply is computed (the command ran) and dropped.
    match (mode_before, session.reply_mode) {
        (ReplyMode::Off, ReplyMode::Off) => out.buf.truncate(written_before),
        (ReplyMode::Skip, after) => {
            out.buf.truncate(written_before);
            if after == ReplyMode::Skip {
                session.reply_mode = ReplyMode::On;
            }
        }
        _ => {}
    }
    ran
}

/// `execute` without the reply mode.
fn dispatch(
    shared: &Shared<'_>,
    session: &mut Session,
    meter: &mut Meter,
    args: &[Bytes],
    out: &mut ReplyBuf,
    now_ms: u64,
) -> (Flow, Option<&'static str>) {
    let Some(first) = args.first() else {
        return (Flow::Continue, None);
    };
    let mut ctx = Ctx {
        shared: *shared,
        session,
        out,
        now_ms,
        flow: Flow::Continue,
        meter,
        redacted_args: 0,
    };
    let Some(entry) = lookup_entry(first) else {
        // As in Redis, an unknown command is no command: no statistics row counts it.
        refuse_queueing(&mut ctx, CmdError::unknown_command(args));
        return (Flow::Continue, None);
    };
    let (entry, start) = match admit(&ctx, entry, args) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            if let Some(row) = refusal.row {
                ctx.meter.rejected(row);
            }
            refuse_queueing(&mut ctx, refusal.err);
            return (Flow::Continue, Some(refusal.name));
        }
    };
    let spec = entry.spec;
    let written_before = ctx.out.len();
    if ctx.session.transaction.is_some()
        && transaction::refused_in_multi_past_maxmemory(spec.name)
        && ctx.shared.memory.over_limit()
    {
        // As in Redis: past maxmemory, a transaction queues nothing (its queue is memory too),
        // and the refusal dooms it.
        refuse_queueing(&mut ctx, CmdError::OutOfMemory);
        return (Flow::Continue, Some(spec.name));
    }
    if ctx.session.transaction.is_some() && !transaction::runs_inside_transaction(spec.name) {
        // Queued, not run: counted (and timed, and maybe logged as slow) when EXEC runs it.
        if let Err(err) = transaction::queue(&mut ctx, args) {
            ctx.meter.rejected(entry.row);
            refuse(&mut ctx, err);
        }
        return (Flow::Continue, Some(spec.name));
    }
    let started = ctx.meter.command_start();
    let mut cursor = Args::new(spec.name, args, start);
    let result = (spec.handler)(&mut ctx, &mut cursor);
    let failed = result.is_err();
    if let Err(err) = result {
        // A refusal is the whole reply: a handler that wrote part of one first would leave the
        // client reading two replies for one request.
        debug_assert_eq!(
            ctx.out.len(),
            written_before,
            "{} wrote a reply before refusing",
            spec.name
        );
        refuse(&mut ctx, err);
    }
    meter::finish(&mut ctx, entry, started, args, failed);
    (ctx.flow, Some(spec.name))
}

/// Why `admit` refused a command: the error, the name `CLIENT LIST` shows, and the statistics
/// row charged with the rejection (none for an unknown subcommand, which is no command).
struct Refusal {
    err: CmdError,
    name: &'static str,
    row: Option<usize>,
}

/// The checks every command passes before its handler runs: arity, authentication, the
/// subscribed-RESP2 rule, then the subcommand and its arity. Admitted, the command to run and
/// where its arguments start.
fn admit(ctx: &Ctx<'_>, entry: Entry, args: &[Bytes]) -> Result<(Entry, usize), Refusal> {
    let spec = entry.spec;
    if !spec.arity_ok(args.len()) {
        return Err(Refusal {
            err: CmdError::WrongArity(spec.name),
            name: spec.name,
            row: Some(entry.row),
        });
    }
    // Redis finds the subcommand before these checks, so it is the one a refusal is counted
    // against (`cmdstat_client|list`, not `cmdstat_client`).
    let refused = |err| Refusal {
        err,
        name: spec.name,
        row: match args.get(1).filter(|_| !spec.subcommands.is_empty()) {
            Some(sub_name) => lookup_subcommand_entry(entry, sub_name).map(|sub| sub.row),
            None => Some(entry.row),
        },
    };
    if !ctx.session.authenticated && !spec.allowed_before_auth() {
        return Err(refused(CmdError::NoAuth));
    }
    if ctx.session.transaction.is_some() && spec.flags.contains(&"no_multi") {
        return Err(refused(CmdError::NotAllowedInTransaction));
    }
    if ctx.out.protocol == crate::resp::Protocol::Resp2
        && ctx.session.subscribed()
        && !pubsub::allowed_while_subscribed(spec.name)
    {
        return Err(refused(CmdError::NotAllowedWhileSubscribed(spec.name)));
    }
    if spec.flags.contains(&"write") {
        if ctx.shared.replication.is_follower() {
            // A follower's users change only through its leader's stream.
            return Err(refused(CmdError::ReadOnly));
        }
        if ctx.shared.replication.too_few_good_followers() {
            return Err(refused(CmdError::NoReplicas));
        }
    }
    let Some(sub_name) = args.get(1).filter(|_| !spec.subcommands.is_empty()) else {
        return Ok((entry, 1));
    };
    let Some(sub) = lookup_subcommand_entry(entry, sub_name) else {
        let err = CmdError::UnknownSubcommand {
            sub: printable(sub_name, 128),
            command: spec.name,
        };
        return Err(Refusal {
            err,
            name: spec.name,
            row: None,
        });
    };
    if !sub.spec.arity_ok(args.len()) {
        return Err(Refusal {
            err: CmdError::WrongArity(sub.spec.name),
            name: sub.spec.name,
            row: Some(sub.row),
        });
    }
    Ok((sub, 2))
}

/// A refusal before the command could run or be queued: inside a transaction it also dooms
/// the transaction (`EXEC` will answer `EXECABORT`), as in Redis.
fn refuse_queueing(ctx: &mut Ctx<'_>, err: CmdError) {
    if let Some(transaction) = ctx.session.transaction.as_mut() {
        transaction.aborted = true;
    }
    refuse(ctx, err);
}

/// Writes a refusal in Redis's words and counts it (`INFO stats`).
fn refuse(ctx: &mut Ctx<'_>, err: CmdError) {
    let text = err.to_string();
    ctx.shared.stats.error_reply(&text);
    ctx.out.error(&text);
}

/// Whether this request must wait before it runs, and until when its connection should look
/// again: a `CLIENT PAUSE` holds it, or it could publish (a write, a PUBLISH, or an EXEC
/// queueing one) while the fan-out is backlogged, when it is looked at again after
/// `BACKLOG_RECHECK_MS`. The connection does the waiting: it stops reading and sleeps on an async
/// timer, so no thread ever sleeps, and a flood slows only the connections sending it while
/// reads (STATUS, MSTATUS, GET, PING) go on. Unknown commands, wrong arities and
/// unauthenticated requests never wait: as in Redis, their error comes first.
pub fn held_until(
    shared: &Shared<'_>,
    session: &Session,
    args: &[Bytes],
    now_ms: u64,
) -> Option<u64> {
    let pausing = shared.clients.pause_at(now_ms).is_some();
    // Two atomic loads on the hot path; the table is consulted only when one says so.
    if !pausing && !shared.pubsub.backlogged() {
        return None;
    }
    let spec = lookup(args.first()?)?;
    if !spec.arity_ok(args.len()) || (!session.authenticated && !spec.allowed_before_auth()) {
        return None;
    }
    if let Some(until_ms) = client::held_by_pause(shared, session, spec, now_ms) {
        return Some(until_ms);
    }
    // SPUBLISH too: it queues deliveries, though a pause (as in Redis) does not hold it.
    let publishes =
        transaction::runs_any(session, spec, |s| may_publish(s) || s.name == "spublish");
    (publishes && shared.pubsub.backlogged()).then_some(now_ms + BACKLOG_RECHECK_MS)
}

/// How long a write held by a backlogged fan-out waits before it looks again. The fan-out
/// makes several million deliveries a second, so its backlog limit drains in well under a
/// second; 10 ms adds little to that, and a thousand held gateways then wake 100 times a
/// second each rather than 1,000.
const BACKLOG_RECHECK_MS: u64 = 10;

/// Whether a command may publish or change what is stored: a write (whose changes may be
/// presence or keyspace events) or a PUBLISH. What `CLIENT PAUSE WRITE` holds, and what waits
/// for a backlogged fan-out.
pub fn may_publish(spec: &CommandSpec) -> bool {
    spec.flags.contains(&"write") || spec.name == "publish"
}

/// The user a presence key names, or why it names none.
pub fn presence_user<'a>(
    ctx: &Ctx<'_>,
    key: &'a [u8],
) -> Result<crate::store::UserKey<'a>, CmdError> {
    let Some(id) = ctx.shared.keyspace.pattern.user_id(key) else {
        return Err(CmdError::KeyOutsidePattern {
            key: printable(key, 128),
            pattern: ctx.shared.keyspace.pattern.as_str().to_string(),
        });
    };
    Ok(ctx.shared.store.parse(id)?)
}

/// Lists a command family's subcommands for `<CMD> HELP`.
pub fn reply_help(out: &mut ReplyBuf, lines: &[&str]) -> CmdResult {
    out.array(lines.len());
    for line in lines {
        out.simple(line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and subcommand has one statistics row, the one `command_rows` names it
    /// by, and the rows fit the per-thread tables.
    #[test]
    fn rows_match_the_lookup() {
        let rows = command_rows();
        assert!(rows.len() <= crate::limits::COMMAND_ROWS_MAX);
        for spec in commands() {
            let entry = lookup_entry(spec.name.as_bytes()).expect("a command is found");
            assert_eq!(rows[entry.row].name, spec.name);
            for sub in spec.subcommands {
                let found = lookup_subcommand_entry(entry, sub.short_name().as_bytes())
                    .expect("a subcommand is found");
                assert_eq!(rows[found.row].name, sub.name);
            }
        }
        let names: hashbrown::HashSet<&str> = rows.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), rows.len(), "row names are unique");
    }
}
