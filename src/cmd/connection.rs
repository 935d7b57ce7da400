//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.

use bytes::Bytes;

use super::{Args, CmdError, CmdResult, CommandSpec, Ctx, printable};
use crate::clients::CloseReason;
use crate::resp::Protocol;

const CONNECTION_ACL: &[&str] = &["@fast", "@connection"];

const fn connection_command(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "connection", summary, handler).with_acl(CONNECTION_ACL)
}

pub const PING: CommandSpec = connection_command(
    "ping",
    -1,
    &["fast"],
    "Returns the server's liveliness response.",
    ping,
);
pub const ECHO: CommandSpec =
    connection_command("echo", 2, &["fast"], "Returns the given string.", echo);
pub const HELLO: CommandSpec = connection_command(
    "hello",
    -1,
    &[
        "noscript",
        "loading",
        "stale",
        "fast",
        "no_auth",
        "allow_busy",
    ],
    "Handshakes with the server: protocol version, authentication, client name.",
    hello,
);
pub const AUTH: CommandSpec = connection_command(
    "auth",
    -2,
    &[
        "noscript",
        "loading",
        "stale",
        "fast",
        "no_auth",
        "allow_busy",
    ],
    "Authenticates the connection.",
    auth,
);
pub const SELECT: CommandSpec = connection_command(
    "select",
    2,
    &["loading", "stale", "fast"],
    "Selects the database (presenced has only database 0).",
    select,
);
pub const QUIT: CommandSpec = connection_command(
    "quit",
    -1,
    &[
        "noscript",
        "loading",
        "stale",
        "fast",
        "no_auth",
        "allow_busy",
    ],
    "Closes the connection.",
    quit,
);
pub const RESET: CommandSpec = connection_command(
    "reset",
    1,
    // Unlike Redis, RESET needs authentication: only AUTH, HELLO and QUIT are open before it.
    &["noscript", "loading", "stale", "fast", "allow_busy"],
    "Resets the connection: protocol 2, no name, authenticated again if a password is set.",
    reset,
);

fn ping(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if args.remaining() > 1 {
        return Err(CmdError::WrongArity("ping"));
    }
    let message = args.next();
    if ctx.out.protocol == Protocol::Resp2 && ctx.session.subscribed() {
        // A subscribed RESP2 connection reads everything as a message: Redis answers in that
        // shape, ["pong", message].
        ctx.out.array(2);
        ctx.out.bulk(b"pong");
        ctx.out.bulk(message.map_or(&b""[..], |m| &m[..]));
        return Ok(());
    }
    match message {
        None => ctx.out.simple("PONG"),
        Some(message) => ctx.out.bulk(message),
    }
    Ok(())
}

fn echo(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    ctx.out.bulk(args.required()?);
    Ok(())
}

fn hello(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let mut protocol = ctx.out.protocol;
    if let Some(version) = args.next() {
        protocol = match crate::resp::parse_integer(version) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Err(CmdError::NoProto),
            None => return Err(CmdError::ProtocolVersionNotInteger),
        };
    }
    let mut credentials = None;
    let mut name = None;
    while let Some(option) = args.next() {
        let more = args.remaining();
        if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            // Kept out of the slow log from here on, whatever HELLO answers (Redis's order).
            let at = args.position();
            ctx.redact(at);
            ctx.redact(at + 1);
            credentials = Some((args.required()?, args.required()?));
        } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            name = Some(args.required()?);
        } else {
            return Err(CmdError::HelloSyntax(printable(option, 128)));
        }
    }
    if let Some((user, pass)) = credentials {
        check_credentials(ctx, Some(user), pass)?;
        ctx.session.authenticated = true;
    }
    if !ctx.session.authenticated {
        return Err(CmdError::HelloNoAuth);
    }
    if let Some(name) = name {
        super::client::validate_name(name)?;
        ctx.session.client.meta().name = String::from_utf8_lossy(name).into_owned();
    }
    ctx.out.protocol = protocol;
    ctx.session.client.set_protocol(protocol);
    let out = &mut *ctx.out;
    out.map(7);
    out.bulk(b"server");
    out.bulk(b"presenced");
    out.bulk(b"version");
    out.bulk(env!("CARGO_PKG_VERSION").as_bytes());
    out.bulk(b"proto");
    out.integer(protocol.version());
    out.bulk(b"id");
    out.integer(ctx.session.id() as i64);
    out.bulk(b"mode");
    out.bulk(b"standalone");
    out.bulk(b"role");
    out.bulk(b"master");
    out.bulk(b"modules");
    out.array(0);
    Ok(())
}

fn auth(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    // Every argument of the one- and two-argument forms is kept out of the slow log; a request
    // of another shape is refused before it is read, and Redis logs it as sent.
    let (user, pass) = match args.remaining() {
        1 => {
            ctx.redact(1);
            (None, args.required()?)
        }
        2 => {
            ctx.redact(1);
            ctx.redact(2);
            (Some(args.required()?), args.required()?)
        }
        _ => return Err(CmdError::Syntax),
    };
    if ctx.shared.config.requirepass.is_none() && user.is_none() {
        return Err(CmdError::AuthWithoutPassword);
    }
    check_credentials(ctx, user, pass)?;
    ctx.session.authenticated = true;
    ctx.out.ok();
    Ok(())
}

/// Only the `default` user exists. Without `--requirepass` it accepts any password, as Redis's
/// `nopass` default user does.
fn check_credentials(ctx: &Ctx<'_>, user: Option<&Bytes>, pass: &[u8]) -> CmdResult {
    if let Some(user) = user
        && user.as_ref() != b"default"
    {
        return Err(CmdError::WrongPass);
    }
    match &ctx.shared.config.requirepass {
        None => Ok(()),
        Some(expected) if constant_time_eq(expected.as_bytes(), pass) => Ok(()),
        Some(_) => Err(CmdError::WrongPass),
    }
}

/// Compares without stopping at the first difference, so response time does not reveal how
/// much of a guessed password was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn select(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    match args.integer()? {
        0 => ctx.out.ok(),
        _ => return Err(CmdError::DbIndexOutOfRange),
    }
    Ok(())
}

fn quit(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.ok();
    ctx.close(CloseReason::Quit);
    Ok(())
}

fn reset(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    super::unsubscribe_all(ctx.shared.pubsub, ctx.session);
    super::abandon_transaction(&ctx.shared, ctx.session);
    ctx.out.protocol = Protocol::Resp2;
    ctx.session.client.set_protocol(Protocol::Resp2);
    ctx.session.authenticated = ctx.shared.config.requirepass.is_none();
    ctx.session.client.meta().name.clear();
    ctx.out.simple("RESET");
    Ok(())
}
