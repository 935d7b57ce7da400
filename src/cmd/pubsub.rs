//! Pub/sub commands: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB, and
//! Redis 7's sharded pub/sub: SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH.

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
/// Sharded pub/sub names its shard channels as keys (a cluster routes them by hash slot), so
/// `COMMAND GETKEYS` and cluster-aware clients find them.
const fn shard_command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    pubsub_command(name, arity, flags, summary, handler).with_since("7.0.0")
}

pub const SSUBSCRIBE: CommandSpec = shard_command(
    "ssubscribe",
    -2,
    SUBSCRIBER_FLAGS,
    "Listens for messages published to shard channels (presence:{<user>} for presence events).",
    ssubscribe,
)
.with_keys(1, -1, 1);
pub const SUNSUBSCRIBE: CommandSpec = shard_command(
    "sunsubscribe",
    -1,
    SUBSCRIBER_FLAGS,
    "Stops listening to shard channels (all of them without arguments).",
    sunsubscribe,
)
.with_keys(1, -1, 1);
pub const SPUBLISH: CommandSpec = shard_command(
    "spublish",
    3,
    &["pubsub", "loading", "stale", "fast"],
    "Posts a message to a shard channel. Replies with how many subscribers will receive it.",
    spublish,
)
.with_keys(1, 1, 1)
.with_acl(&["@pubsub", "@fast"]);
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
        shard_command(
            "pubsub|shardchannels",
            -2,
            &["pubsub", "loading", "stale"],
            "Returns the active shard channels, optionally those matching a pattern.",
            shard_channels,
        ),
        shard_command(
            "pubsub|shardnumsub",
            -2,
            &["pubsub", "loading", "stale"],
            "Returns the subscriber count of shard channels.",
            shard_numsub,
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
        "subscribe"
            | "unsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "ssubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

fn subscribe(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    add(ctx, args.rest(), Kind::Channel)
}

fn psubscribe(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    add(ctx, args.rest(), Kind::Pattern)
}

fn ssubscribe(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if ctx.session.in_exec {
        return Err(CmdError::DenyBlocking("SSUBSCRIBE"));
    }
    add(ctx, args.rest(), Kind::Shard)
}

fn sunsubscribe(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    remove(ctx, args.rest(), Kind::Shard);
    Ok(())
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
    let held = session.subscription_count() + session.shard_channels.len();
    if held + names.len() > SUBSCRIPTIONS_PER_CLIENT_MAX {
        let new_count = names
            .iter()
            .filter(|n| !set(session, kind).contains(*n))
            .count();
        if held + new_count > SUBSCRIPTIONS_PER_CLIENT_MAX {
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
        Kind::Shard => b"ssubscribe",
    };
    for name in names {
        if set(ctx.session, kind).insert(name.clone()) {
            ctx.shared.pubsub.subscribe(kind, name, &ctx.session.client);
        }
        let count = confirmed_count(ctx.session, kind);
        confirm(ctx.out, word, Some(name), count);
    }
    record_counts(ctx.session);
    Ok(())
}

fn remove(ctx: &mut Ctx<'_>, names: &[Bytes], kind: Kind) {
    let word: &[u8] = match kind {
        Kind::Channel => b"unsubscribe",
        Kind::Pattern => b"punsubscribe",
        Kind::Shard => b"sunsubscribe",
    };
    let names: Vec<Bytes> = if names.is_empty() {
        set(ctx.session, kind).iter().cloned().collect()
    } else {
        names.to_vec()
    };
    if names.is_empty() {
        let count = confirmed_count(ctx.session, kind);
        confirm(ctx.out, word, None, count);
        return;
    }
    let client_id = ctx.session.id();
    for name in &names {
        if set(ctx.session, kind).remove(name) {
            ctx.shared.pubsub.unsubscribe(kind, name, client_id);
        }
        let count = confirmed_count(ctx.session, kind);
        confirm(ctx.out, word, Some(name), count);
    }
    record_counts(ctx.session);
}

fn set(session: &mut Session, kind: Kind) -> &mut hashbrown::HashSet<Bytes> {
    match kind {
        Kind::Channel => &mut session.channels,
        Kind::Pattern => &mut session.patterns,
        Kind::Shard => &mut session.shard_channels,
    }
}

/// The count a confirmation carries: channels and patterns together, shard channels apart
/// (Redis's two counts).
fn confirmed_count(session: &Session, kind: Kind) -> usize {
    match kind {
        Kind::Channel | Kind::Pattern => session.subscription_count(),
        Kind::Shard => session.shard_channels.len(),
    }
}

fn record_counts(session: &Session) {
    let mut meta = session.client.meta();
    meta.channel_subscriptions = session.channels.len();
    meta.pattern_subscriptions = session.patterns.len();
    meta.shard_subscriptions = session.shard_channels.len();
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
    for name in session.shard_channels.drain() {
        pubsub.unsubscribe(Kind::Shard, &name, client_id);
    }
    record_counts(session);
}

fn publish(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let channel = args.required()?;
    let message = args.required()?;
    // Replicated as Redis replicates PUBLISH: a follower's subscribers receive it too.
    let pubsub = ctx.shared.pubsub;
    let receivers = ctx
        .shared
        .replication
        .with_frame(&[b"PUBLISH", channel, message], || {
            pubsub.publish(channel, message)
        });
    ctx.out.integer(receivers as i64);
    Ok(())
}

fn spublish(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let channel = args.required()?;
    let message = args.required()?;
    let receivers = ctx.shared.pubsub.spublish(channel, message);
    ctx.out.integer(receivers as i64);
    Ok(())
}

fn channels(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    list_channels(ctx, args, Kind::Channel)
}

fn shard_channels(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    list_channels(ctx, args, Kind::Shard)
}

fn numsub(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    count_subscribers(ctx, args, Kind::Channel)
}

fn shard_numsub(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    count_subscribers(ctx, args, Kind::Shard)
}

/// `PUBSUB CHANNELS|SHARDCHANNELS [pattern]`.
fn list_channels(ctx: &mut Ctx<'_>, args: &mut Args<'_>, kind: Kind) -> CmdResult {
    if args.remaining() > 1 {
        return Err(typed_arguments_error(args));
    }
    let names = ctx
        .shared
        .pubsub
        .channels(kind, args.next().map(|p| &p[..]));
    ctx.out.array(names.len());
    for name in names {
        ctx.out.bulk(&name);
    }
    Ok(())
}

/// `PUBSUB NUMSUB|SHARDNUMSUB [channel ...]`: each channel with its subscriber count.
fn count_subscribers(ctx: &mut Ctx<'_>, args: &mut Args<'_>, kind: Kind) -> CmdResult {
    let channels = args.rest();
    ctx.out.array(channels.len() * 2);
    for channel in channels {
        ctx.out.bulk(channel);
        ctx.out
            .integer(ctx.shared.pubsub.numsub(kind, channel) as i64);
    }
    Ok(())
}

/// Redis's text for a subcommand with too many arguments names it and its command as typed.
fn typed_arguments_error(args: &Args<'_>) -> CmdError {
    let request = args.request();
    let typed = |i: usize| request.get(i).map_or(String::new(), |w| printable(w, 128));
    CmdError::SubcommandArguments {
        sub: typed(1),
        command: typed(0).to_ascii_uppercase(),
    }
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
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
            "HELP",
            "    Prints this help.",
        ],
    )
}
