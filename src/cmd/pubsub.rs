//! Pub/sub commands: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB.

use bytes::Bytes;

use super::{CommandSpec, Ctx, printable, reply_help};
use crate::limits::{CHANNEL_NAME_LEN_MAX, PATTERNS_PER_CLIENT_MAX, SUBSCRIPTIONS_PER_CLIENT_MAX};
use crate::pubsub::{Kind, confirmation};
use crate::server::Server;
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
pub const PUBSUB: CommandSpec = CommandSpec {
    name: "pubsub",
    arity: -2,
    flags: &[],
    first_key: 0,
    last_key: 0,
    key_step: 0,
    acl_categories: &["@slow"],
    group: "pubsub",
    since: "2.8.0",
    summary: "A container for pub/sub introspection commands.",
    complexity: "Depends on subcommand.",
    handler: |_, _| {},
    subcommands: &[
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
    arguments: &[],
};

/// The commands a RESP2 connection may send while it has subscriptions (Redis's rule: its
/// replies would otherwise be mistaken for published messages).
pub fn allowed_while_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
    )
}

fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    add(ctx, &args[1..], Kind::Channel);
}

fn psubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    add(ctx, &args[1..], Kind::Pattern);
}

fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    remove(ctx, &args[1..], Kind::Channel);
}

fn punsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    remove(ctx, &args[1..], Kind::Pattern);
}

fn add(ctx: &mut Ctx<'_>, names: &[Bytes], kind: Kind) {
    // Checked before anything changes, so a refused call subscribes to nothing.
    if let Some(long) = names.iter().find(|n| n.len() > CHANNEL_NAME_LEN_MAX) {
        return ctx.out.error(&format!(
            "ERR channel name '{}...' is longer than {CHANNEL_NAME_LEN_MAX} bytes",
            printable(long, 32)
        ));
    }
    if ctx.session.subscription_count() + names.len() > SUBSCRIPTIONS_PER_CLIENT_MAX {
        let new_count = names
            .iter()
            .filter(|n| !set(ctx.session, kind).contains(*n))
            .count();
        if ctx.session.subscription_count() + new_count > SUBSCRIPTIONS_PER_CLIENT_MAX {
            return ctx.out.error(&format!(
                "ERR too many subscriptions for one client (at most {SUBSCRIPTIONS_PER_CLIENT_MAX})"
            ));
        }
    }
    if kind == Kind::Pattern {
        let new_patterns = names
            .iter()
            .filter(|n| !ctx.session.patterns.contains(*n))
            .count();
        if ctx.session.patterns.len() + new_patterns > PATTERNS_PER_CLIENT_MAX {
            return ctx.out.error(&format!(
                "ERR too many patterns for one client (at most {PATTERNS_PER_CLIENT_MAX})"
            ));
        }
    }
    let word: &[u8] = match kind {
        Kind::Channel => b"subscribe",
        Kind::Pattern => b"psubscribe",
    };
    for name in names {
        if set(ctx.session, kind).insert(name.clone()) {
            ctx.server.pubsub.subscribe(kind, name, &ctx.session.client);
        }
        let count = ctx.session.subscription_count();
        confirmation(&mut ctx.out.buf, ctx.out.protocol, word, Some(name), count);
    }
    record_counts(ctx.session);
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
        confirmation(&mut ctx.out.buf, ctx.out.protocol, word, None, count);
        return;
    }
    let client_id = ctx.session.id();
    for name in &names {
        if set(ctx.session, kind).remove(name) {
            ctx.server.pubsub.unsubscribe(kind, name, client_id);
        }
        let count = ctx.session.subscription_count();
        confirmation(&mut ctx.out.buf, ctx.out.protocol, word, Some(name), count);
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
pub fn unsubscribe_all(server: &Server, session: &mut Session) {
    let client_id = session.id();
    for name in session.channels.drain() {
        server.pubsub.unsubscribe(Kind::Channel, &name, client_id);
    }
    for name in session.patterns.drain() {
        server.pubsub.unsubscribe(Kind::Pattern, &name, client_id);
    }
    record_counts(session);
}

fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let receivers = ctx.server.pubsub.publish(&args[1], &args[2]);
    ctx.out.integer(receivers as i64);
}

fn channels(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if args.len() > 3 {
        return ctx.out.error(&super::wrong_arity("pubsub|channels"));
    }
    let names = ctx.server.pubsub.channels(args.get(2).map(|p| &p[..]));
    ctx.out.array(names.len());
    for name in names {
        ctx.out.bulk(&name);
    }
}

fn numsub(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    ctx.out.array((args.len() - 2) * 2);
    for channel in &args[2..] {
        ctx.out.bulk(channel);
        ctx.out.integer(ctx.server.pubsub.numsub(channel) as i64);
    }
}

fn numpat(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    ctx.out.integer(ctx.server.pubsub.numpat() as i64);
}

fn help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
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
    );
}
