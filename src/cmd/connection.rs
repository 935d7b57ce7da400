//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.

use bytes::Bytes;

use super::{CommandSpec, Ctx, NOT_AN_INTEGER, SYNTAX_ERROR, parse_i64, printable, wrong_arity};
use crate::resp::Protocol;
use crate::session::Flow;

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

fn ping(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if ctx.out.protocol == Protocol::Resp2 && ctx.session.subscription_count() > 0 {
        // A subscribed RESP2 connection reads everything as a message: Redis answers in that
        // shape, ["pong", message].
        if args.len() > 2 {
            return ctx.out.error(&wrong_arity("ping"));
        }
        ctx.out.array(2);
        ctx.out.bulk(b"pong");
        ctx.out.bulk(args.get(1).map_or(&b""[..], |m| &m[..]));
        return;
    }
    match args.len() {
        1 => ctx.out.simple("PONG"),
        2 => ctx.out.bulk(&args[1]),
        _ => ctx.out.error(&wrong_arity("ping")),
    }
}

fn echo(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    ctx.out.bulk(&args[1]);
}

fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mut protocol = ctx.out.protocol;
    if let Some(version) = args.get(1) {
        protocol = match parse_i64(version) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return ctx.out.error("NOPROTO unsupported protocol version"),
            None => {
                return ctx
                    .out
                    .error("ERR Protocol version is not an integer or out of range");
            }
        };
    }
    let mut credentials = None;
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let option = &args[i];
        let more = args.len() - i - 1;
        if option.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            credentials = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if option.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            name = Some(&args[i + 1]);
            i += 2;
        } else {
            return ctx.out.error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                printable(option, 128)
            ));
        }
    }
    if let Some((user, pass)) = credentials {
        if let Err(message) = check_credentials(ctx, Some(user), pass) {
            return ctx.out.error(message);
        }
        ctx.session.authenticated = true;
    }
    if !ctx.session.authenticated {
        return ctx.out.error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO AUTH <user> <pass> option can be used to authenticate the client and select \
             the RESP protocol version at the same time",
        );
    }
    if let Some(name) = name {
        if let Err(message) = super::client::validate_name(name) {
            return ctx.out.error(message);
        }
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
}

fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let (user, pass) = match args.len() {
        2 => (None, &args[1]),
        3 => (Some(&args[1]), &args[2]),
        _ => return ctx.out.error(SYNTAX_ERROR),
    };
    if ctx.server.config.requirepass.is_none() && user.is_none() {
        return ctx.out.error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    }
    match check_credentials(ctx, user, pass) {
        Ok(()) => {
            ctx.session.authenticated = true;
            ctx.out.ok();
        }
        Err(message) => ctx.out.error(message),
    }
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Only the `default` user exists. Without `--requirepass` it accepts any password, as Redis's
/// `nopass` default user does.
fn check_credentials(ctx: &Ctx<'_>, user: Option<&Bytes>, pass: &[u8]) -> Result<(), &'static str> {
    if let Some(user) = user
        && user.as_ref() != b"default"
    {
        return Err(WRONGPASS);
    }
    match &ctx.server.config.requirepass {
        None => Ok(()),
        Some(expected) if constant_time_eq(expected.as_bytes(), pass) => Ok(()),
        Some(_) => Err(WRONGPASS),
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

fn select(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    match parse_i64(&args[1]) {
        Some(0) => ctx.out.ok(),
        Some(_) => ctx.out.error("ERR DB index is out of range"),
        None => ctx.out.error(NOT_AN_INTEGER),
    }
}

fn quit(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    ctx.out.ok();
    ctx.flow = Flow::Close;
}

fn reset(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    super::unsubscribe_all(ctx.server, ctx.session);
    ctx.out.protocol = Protocol::Resp2;
    ctx.session.client.set_protocol(Protocol::Resp2);
    ctx.session.authenticated = ctx.server.config.requirepass.is_none();
    {
        let mut meta = ctx.session.client.meta();
        meta.name.clear();
    }
    ctx.out.simple("RESET");
}
