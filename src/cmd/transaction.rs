//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, with Redis's semantics.
//!
//! Between `MULTI` and `EXEC` the dispatcher queues every command but these five (and QUIT and
//! RESET), answering `+QUEUED`; a command refused while queueing (unknown, wrong arity, not
//! allowed in a transaction) makes `EXEC` abort with `EXECABORT`. `EXEC` runs the queue with
//! every other client held off (the connection takes the server's exclusive gate for it, see
//! `needs_exclusive`); an error inside does not stop the commands after it. A `WATCH`ed key
//! that changed since it was watched — any change the store's door recorded (a heartbeat, a
//! `SET`, a logout, an expiry, `FLUSHALL`), or an expiry the timer has not settled yet — makes
//! `EXEC` answer a null array and run nothing.
//!
//! Past `maxmemory`, as in Redis: nothing is queued (every command but `EXEC`, `DISCARD`,
//! `QUIT` and `RESET` answers `-OOM` and dooms the transaction), and an `EXEC` whose queue holds
//! a command flagged `denyoom` is refused whole (`EXECABORT ... because of: OOM ...`), before
//! the watched keys or earlier refusals are looked at.

use bytes::Bytes;

use super::{Args, CmdError, CmdResult, CommandSpec, Ctx, presence_user};
use crate::limits::WATCHED_KEYS_MAX;
use crate::services::Shared;
use crate::session::{Session, Transaction, WatchedKey};

const fn transaction_command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "transactions", summary, handler)
        .with_acl(&["@fast", "@transaction"])
        .with_since("1.2.0")
}

const FLAGS: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];

pub const MULTI: CommandSpec = transaction_command(
    "multi",
    1,
    FLAGS,
    "Starts a transaction: later commands are queued until EXEC.",
    multi,
);
pub const EXEC: CommandSpec = transaction_command(
    "exec",
    1,
    &["noscript", "loading", "stale", "skip_slowlog"],
    "Runs the queued commands as one, unless a watched key changed.",
    exec,
)
.with_acl(&["@slow", "@transaction"]);
pub const DISCARD: CommandSpec = transaction_command(
    "discard",
    1,
    FLAGS,
    "Drops the queued commands and ends the transaction.",
    discard,
);
pub const WATCH: CommandSpec = transaction_command(
    "watch",
    -2,
    FLAGS,
    "Makes the next EXEC run only if none of these keys changed.",
    watch,
)
.with_keys(1, -1, 1)
.with_since("2.2.0");
pub const UNWATCH: CommandSpec =
    transaction_command("unwatch", 1, FLAGS, "Forgets every watched key.", unwatch)
        .with_since("2.2.0");

/// The commands that run at once inside a transaction instead of being queued (Redis's list).
pub fn runs_inside_transaction(name: &str) -> bool {
    matches!(
        name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

/// Whether a command sent inside a transaction is refused past `maxmemory` (Redis's list of
/// the commands that are not: they end the transaction).
pub fn refused_in_multi_past_maxmemory(name: &str) -> bool {
    !matches!(name, "exec" | "discard" | "quit" | "reset")
}

/// Whether this request must run with every other client held off (the exclusive side of the
/// server's gate): an `EXEC` that will run a queue, or a `REPLICAOF`/`SLAVEOF` run on its own
/// (a leader stepping down ships its last changes with no write slipping in after them).
pub fn needs_exclusive(session: &Session, args: &[Bytes]) -> bool {
    let Some(name) = args.first() else {
        return false;
    };
    if session.transaction.is_some() {
        return name.eq_ignore_ascii_case(b"exec");
    }
    name.eq_ignore_ascii_case(b"replicaof") || name.eq_ignore_ascii_case(b"slaveof")
}

/// Whether running `spec` now runs a command `matches` accepts: `spec` itself, or for an
/// `EXEC`, any command its transaction queued.
pub fn runs_any(
    session: &Session,
    spec: &CommandSpec,
    matches: impl Fn(&CommandSpec) -> bool,
) -> bool {
    if spec.name != "exec" {
        return matches(spec);
    }
    session.transaction.as_ref().is_some_and(|t| {
        t.queued
            .iter()
            .filter_map(|queued| super::lookup(queued.first()?))
            .any(matches)
    })
}

/// Records the queue's length for `CLIENT LIST` (`multi=`, -1 outside a transaction).
fn record_multi(session: &Session) {
    let queued = session
        .transaction
        .as_ref()
        .map_or(-1, |t| t.queued.len() as i64);
    session.client.meta().multi = queued;
}

/// Queues one request of a transaction (the dispatcher calls this after admitting it).
pub fn queue(ctx: &mut Ctx<'_>, args: &[Bytes]) -> CmdResult {
    let Some(transaction) = ctx.session.transaction.as_mut() else {
        return Err(CmdError::ExecWithoutMulti);
    };
    if transaction.queued.len() >= crate::limits::TRANSACTION_QUEUED_MAX {
        transaction.aborted = true;
        return Err(CmdError::TransactionTooLong);
    }
    transaction.queued.push(args.to_vec());
    record_multi(ctx.session);
    ctx.out.simple("QUEUED");
    Ok(())
}

fn multi(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    if ctx.session.transaction.is_some() {
        return Err(CmdError::MultiNested);
    }
    ctx.session.transaction = Some(Transaction::default());
    record_multi(ctx.session);
    ctx.out.ok();
    Ok(())
}

fn discard(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    if ctx.session.transaction.take().is_none() {
        return Err(CmdError::DiscardWithoutMulti);
    }
    record_multi(ctx.session);
    unwatch_all(&ctx.shared, ctx.session);
    ctx.out.ok();
    Ok(())
}

fn exec(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    let Some(transaction) = ctx.session.transaction.take() else {
        return Err(CmdError::ExecWithoutMulti);
    };
    record_multi(ctx.session);
    let intact = watched_intact(&ctx.shared, ctx.session, ctx.now_ms);
    unwatch_all(&ctx.shared, ctx.session);
    if ctx.shared.memory.over_limit()
        && transaction
            .queued
            .iter()
            .filter_map(|queued| super::lookup(queued.first()?))
            .any(CommandSpec::may_add)
    {
        return Err(CmdError::ExecAbortOutOfMemory);
    }
    if transaction.aborted {
        return Err(CmdError::ExecAbort);
    }
    if ctx.shared.replication.too_few_good_followers()
        && transaction
            .queued
            .iter()
            .filter_map(|queued| super::lookup(queued.first()?))
            .any(|spec| spec.flags.contains(&"write"))
    {
        // The followers went away between queueing and EXEC: as Redis judges an EXEC by the
        // writes it holds.
        return Err(CmdError::ExecAbortNoReplicas);
    }
    if !intact {
        ctx.out.null_array();
        return Ok(());
    }
    ctx.out.array(transaction.queued.len());
    ctx.session.in_exec = true;
    for args in &transaction.queued {
        let (flow, _) = super::execute(
            &ctx.shared,
            ctx.session,
            ctx.meter,
            args,
            ctx.out,
            ctx.now_ms,
        );
        // A queued CLIENT KILL of this very client closes it after the whole reply, as in
        // Redis; the commands after it still run.
        if flow != crate::session::Flow::Continue {
            ctx.flow = flow;
        }
    }
    ctx.session.in_exec = false;
    Ok(())
}

fn watch(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if ctx.session.transaction.is_some() {
        return Err(CmdError::WatchInsideMulti);
    }
    let keys = args.rest();
    let new_count = keys
        .iter()
        .filter(|k| !ctx.session.watched.contains_key(*k))
        .count();
    if ctx.session.watched.len() + new_count > WATCHED_KEYS_MAX {
        return Err(CmdError::TooManyWatchedKeys);
    }
    for key in keys {
        if ctx.session.watched.contains_key(key) {
            continue;
        }
        // A key outside the presence pattern can never exist here, so it never changes.
        let (mark, existed) = match presence_user(ctx, key) {
            Ok(user) => {
                // The mark first: a change that lands between the two reads then shows as a
                // change, never the other way round.
                let mark = ctx.shared.store.watch(user);
                let existed = ctx.shared.store.key_value(user, ctx.now_ms).is_some();
                (Some(mark), existed)
            }
            Err(_) => (None, false),
        };
        ctx.session
            .watched
            .insert(key.clone(), WatchedKey { mark, existed });
    }
    ctx.out.ok();
    Ok(())
}

fn unwatch(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    unwatch_all(&ctx.shared, ctx.session);
    ctx.out.ok();
    Ok(())
}

/// Whether no watched key changed: its door-recorded version is the one seen at `WATCH`, and a
/// key that existed then still does (an expiry the timer has not settled yet is a change too).
fn watched_intact(shared: &Shared<'_>, session: &Session, now_ms: u64) -> bool {
    session.watched.iter().all(|(key, watched)| {
        let Some(mark) = watched.mark else {
            return true;
        };
        let Some(user) = watched_user(shared, key) else {
            return true;
        };
        shared.store.watch_intact(user, mark)
            && (!watched.existed || shared.store.key_value(user, now_ms).is_some())
    })
}

fn watched_user<'a>(shared: &Shared<'_>, key: &'a [u8]) -> Option<crate::store::UserKey<'a>> {
    let id = shared.keyspace.pattern.user_id(key)?;
    shared.store.parse(id).ok()
}

/// Forgets every key this connection watches (EXEC, DISCARD, UNWATCH, RESET, and the end of
/// the connection: a watch must not outlive its client in the store's watch tables).
pub fn unwatch_all(shared: &Shared<'_>, session: &mut Session) {
    for (key, watched) in session.watched.drain() {
        if watched.mark.is_some()
            && let Some(user) = watched_user(shared, &key)
        {
            shared.store.unwatch(user);
        }
    }
}

/// Ends a transaction being queued, if any (RESET, the end of the connection).
pub fn abandon(shared: &Shared<'_>, session: &mut Session) {
    if session.transaction.take().is_some() {
        record_multi(session);
    }
    unwatch_all(shared, session);
}
