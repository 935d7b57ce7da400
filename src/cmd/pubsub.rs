//! Pub/sub commands: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB.

use bytes::Bytes;

use super::{Args, CmdError, CmdResult, CommandSpec, Ctx, printable, reply_help};
use crate::limits::{CHANNEL_NAME_LEN_MAX, PATTERNS_PER_CLIENT_MAX, SUBSCRIPTIONS_PER_CLIENT_MAX};
use crate::pubsub::{Kind, PubSub};
use crate::resp::ReplyBuf;
use crate::session::Session;

const fn pubsub_command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "pubsub", summary, handler)
        .with_acl(&["@pubsub", "@slow"])
        .with_since("2.0.0")
        .with_complexity("O(N) where N is the number of channels or patterns")
}

const SUBSCRIBER_FLAGS: &[&str] = &["pubsub", "noscript", "loading", "stale"];

pub const SUBSCRIBE: CommandSpec = pubsub_command(
    "subscribe",
    -2,
    SUBSCRIBER_FLAGS,
    "Listens for messages published to channels (presence:<user> for presence events).",
    subscribe,
);
pub const UNSUBSCRIBE: CommandSpec = pubsub_command(
    "unsubscribe",
    -1,
    SUBSCRIBER_FLAGS,
    "Stops listening to channels (all of them without arguments).",
    unsubscribe,
);
pub const PSUBSCRIBE: CommandSpec = pubsub_command(
    "psubscribe",
    -2,
    SUBSCRIBER_FLAGS,
    "Listens for messages published to channels matching glob patterns.",
    psubscribe,
);
pub const PUNSUBSCRIBE: CommandSpec = pubsub_command(
    "punsubscribe",
    -1,
    SUBSCRIBER_FLAGS,
    "Stops listening to patterns (all of them without arguments).",
    punsubscribe,
);
pub const PUBLISH: CommandSpec = pubsub_command(
    "publish",
    3,
    &["pubsub", "loading", "stale", "fast"],
    "Posts a message to a channel. Replies with how many subscriptions will receive it.",
    publish,
);
pub const PUBSUB: CommandSpec = CommandSpec::container(
    "pubsub",
    "pubsub",
    "2.8.0",
    "A container for pub/sub introspection commands.",
    &[
        pubsub_command(
            "pubsub|channels",
            -2,
            &["pubsub", "loading", "stale"],
            "Returns the active channels, optionally those matching a pattern.",
            channels,
        ),
        pubsub_command(
            "pubsub|numsub",
            -2,
            &["pubsub", "loading", "stale"],
            "Returns the subscriber count of channels.",
            numsub,
        ),
        pubsub_command(
            "pubsub|numpat",
            2,
            &["pubsub", "loading", "stale"],
            "Returns the number of unique patterns subscribed to.",
            numpat,
        ),
        pubsub_command(
            "pubsub|help",
            2,
            &["loading", "stale"],
            "Returns helpful text about the subcommands.",
            help,
        ),
    ],
);

/// The commands a RESP2 connection may send while it has subscriptions (Redis's rule: its
/// replies would otherwise be mistaken for published messages).
pub fn allowed_while_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
    )
}

fn subscribe(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    add(ctx, args.rest(), Kind::Channel)
}

fn psubscribe(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    add(ctx, args.rest(), Kind::Pattern)
}

fn unsubscribe(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    remove(ctx, args.rest(), Kind::Channel);
    Ok(())
}

fn punsubscribe(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    remove(ctx, args.rest(), Kind::Pattern);
    Ok(())
}

/// A (un)subscribe confirmation: `<kind> <channel or null> <count>`, a push in RESP3.
fn confirm(out: &mut ReplyBuf, word: &[u8], name: Option<&[u8]>, count: usize) {
    out.push(3);
    out.bulk(word);
    match name {
        Some(name) => out.bulk(name),
        None => out.null(),
    }
    out.integer(count as i64);
}

/// Refuses, before anything changes, a call that would pass a per-client limit.
fn check_limits(session: &mut Session, names: &[Bytes], kind: Kind) -> CmdResult {
    if let Some(long) = names.iter().find(|n| n.len() > CHANNEL_NAME_LEN_MAX) {
        return Err(CmdError::ChannelNameTooLong(printable(long, 32)));
    }
    if session.subscription_count() + names.len() > SUBSCRIPTIONS_PER_CLIENT_MAX {
        let new_count = names
            .iter()
            .filter(|n| !set(session, kind).contains(*n))
            .count();
        if session.subscription_count() + new_count > SUBSCRIPTIONS_PER_CLIENT_MAX {
            return Err(CmdError::TooManySubscriptions);
        }
    }
    if kind == Kind::Pattern {
        let new_patterns = names
            .iter()
            .filter(|n| !session.patterns.contains(*n))
            .count();
        if session.patterns.len() + new_patterns > PATTERNS_PER_CLIENT_MAX {
            return Err(CmdError::TooManyPatterns);
        }
    }
    Ok(())
}

fn add(ctx: &mut Ctx<'_>, names: &[Bytes], kind: Kind) -> CmdResult {
    check_limits(ctx.session, names, kind)?;
    let word: &[u8] = match kind {
        Kind::Channel => b"subscribe",
        Kind::Pattern => b"psubscribe",
    };
    for name in names {
        if set(ctx.session, kind).insert(name.clone()) {
            ctx.shared.pubsub.subscribe(kind, name, &ctx.session.client);
        }
        let count = ctx.session.subscription_count();
        confirm(ctx.out, word, Some(name), count);
    }
    record_counts(ctx.session);
    Ok(())
}

fn remove(ctx: &mut Ctx<'_>, names: &[Bytes], kind: Kind) {
    let word: &[u8] = match kind {
        Kind::Channel => b"unsubscribe",
        Kind::Pattern => b"punsubscribe",
    };
    let names: Vec<Bytes> = if names.is_empty() {
        set(ctx.session, kind).iter().cloned().collect()
    } else {
        names.to_vec()
    };
    if names.is_empty() {
        let count = ctx.session.subscription_count();
        confirm(ctx.out, word, None, count);
        return;
    }
    let client_id = ctx.session.id();
    for name in &names {
        if set(ctx.session, kind).remove(name) {
            ctx.shared.pubsub.unsubscribe(kind, name, client_id);
        }
        let count = ctx.session.subscription_count();
        confirm(ctx.out, word, Some(name), count);
    }
    record_counts(ctx.session);
}

fn set(session: &mut Session, kind: Kind) -> &mut hashbrown::HashSet<Bytes> {
    match kind {
        Kind::Channel => &mut session.channels,
        Kind::Pattern => &mut session.patterns,
    }
}

fn record_counts(session: &Session) {
    let mut meta = session.client.meta();
    meta.channel_subscriptions = session.channels.len();
    meta.pattern_subscriptions = session.patterns.len();
}

/// Drops every subscription of a connection (on close and on RESET).
pub fn unsubscribe_all(pubsub: &PubSub, session: &mut Session) {
    let client_id = session.id();
    for name in session.channels.drain() {
        pubsub.unsubscribe(Kind::Channel, &name, client_id);
    }
    for name in session.patterns.drain() {
        pubsub.unsubscribe(Kind::Pattern, &name, client_id);
    }
    record_counts(session);
}

fn publish(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let channel = args.required()?;
    let message = args.required()?;
    let receivers = ctx.shared.pubsub.publish(channel, message);
    ctx.out.integer(receivers as i64);
    Ok(())
}

fn channels(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if args.remaining() > 1 {
        return Err(CmdError::WrongArity("pubsub|channels"));
    }
    let names = ctx.shared.pubsub.channels(args.next().map(|p| &p[..]));
    ctx.out.array(names.len());
    for name in names {
        ctx.out.bulk(&name);
    }
    Ok(())
}

fn numsub(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let channels = args.rest();
    ctx.out.array(channels.len() * 2);
    for channel in channels {
        ctx.out.bulk(channel);
        ctx.out.integer(ctx.shared.pubsub.numsub(channel) as i64);
    }
    Ok(())
}

fn numpat(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.integer(ctx.shared.pubsub.numpat() as i64);
    Ok(())
}

fn help(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    reply_help(
        ctx.out,
        &[
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels.",
            "HELP",
            "    Print this help.",
        ],
    )
}
