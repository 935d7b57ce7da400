//! The command table and dispatch: name lookup, arity, authentication, subcommands.
//! One file per command family; each handler parses its own arguments and writes its reply.

mod client;
mod connection;
mod introspection;
mod keys;
mod presence;
mod pubsub;
mod server_admin;
mod strings;

use std::sync::OnceLock;

use bytes::Bytes;
use hashbrown::HashMap;

pub use pubsub::unsubscribe_all;

use crate::resp::ReplyBuf;
use crate::server::Server;
use crate::session::{Flow, Session};

/// What a handler works with.
pub struct Ctx<'a> {
    pub server: &'a Server,
    pub session: &'a mut Session,
    pub out: &'a mut ReplyBuf,
    pub now_ms: u64,
    pub flow: Flow,
}

type Handler = fn(&mut Ctx<'_>, &[Bytes]);

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
    pubsub::SUBSCRIBE,
    pubsub::UNSUBSCRIBE,
    pubsub::PSUBSCRIBE,
    pubsub::PUNSUBSCRIBE,
    pubsub::PUBLISH,
    pubsub::PUBSUB,
    client::CLIENT,
    introspection::COMMAND,
    server_admin::INFO,
    server_admin::DBSIZE,
    server_admin::CONFIG,
    server_admin::TIME,
    server_admin::FLUSHALL,
    server_admin::SHUTDOWN,
    server_admin::SAVE,
    server_admin::BGSAVE,
    server_admin::LASTSAVE,
];

fn table() -> &'static HashMap<&'static str, &'static CommandSpec> {
    static TABLE: OnceLock<HashMap<&'static str, &'static CommandSpec>> = OnceLock::new();
    TABLE.get_or_init(|| COMMANDS.iter().map(|c| (c.name, c)).collect())
}

/// Case-insensitive lookup without allocating: command names are short ASCII words.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
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

/// Runs one request and writes its reply. Returns what the connection should do next and
/// the name of the command that ran (for `CLIENT LIST`).
pub fn execute(
    server: &Server,
    session: &mut Session,
    args: &[Bytes],
    out: &mut ReplyBuf,
    now_ms: u64,
) -> (Flow, Option<&'static str>) {
    let Some(first) = args.first() else {
        return (Flow::Continue, None);
    };
    let Some(spec) = lookup(first) else {
        out.error(&unknown_command_message(args));
        return (Flow::Continue, None);
    };
    if !spec.arity_ok(args.len()) {
        out.error(&wrong_arity(spec.name));
        return (Flow::Continue, Some(spec.name));
    }
    if !session.authenticated && !spec.allowed_before_auth() {
        out.error("NOAUTH Authentication required.");
        return (Flow::Continue, Some(spec.name));
    }
    if out.protocol == crate::resp::Protocol::Resp2
        && session.subscription_count() > 0
        && !pubsub::allowed_while_subscribed(spec.name)
    {
        out.error(&format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        ));
        return (Flow::Continue, Some(spec.name));
    }
    let mut spec = spec;
    if !spec.subcommands.is_empty() && args.len() >= 2 {
        let Some(sub) = lookup_subcommand(spec, &args[1]) else {
            out.error(&format!(
                "ERR unknown subcommand '{}'. Try {} HELP.",
                printable(&args[1], 128),
                spec.name.to_ascii_uppercase()
            ));
            return (Flow::Continue, Some(spec.name));
        };
        if !sub.arity_ok(args.len()) {
            out.error(&wrong_arity(sub.name));
            return (Flow::Continue, Some(sub.name));
        }
        spec = sub;
    }
    let mut ctx = Ctx {
        server,
        session,
        out,
        now_ms,
        flow: Flow::Continue,
    };
    (spec.handler)(&mut ctx, args);
    (ctx.flow, Some(spec.name))
}

/// Redis's text: the name and the first arguments, each quoted, up to about 128 bytes.
fn unknown_command_message(args: &[Bytes]) -> String {
    let mut listed = String::new();
    for arg in &args[1..] {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push('\'');
        listed.push_str(&printable(arg, room));
        listed.push_str("' ");
    }
    format!(
        "ERR unknown command '{}', with args beginning with: {}",
        printable(&args[0], 128),
        listed
    )
}

/// Client bytes as text for an error line, cut at `max_bytes`.
pub fn printable(bytes: &[u8], max_bytes: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max_bytes)]).into_owned()
}

pub fn wrong_arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

pub const SYNTAX_ERROR: &str = "ERR syntax error";
pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";

/// A decimal integer argument, parsed as Redis does.
pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    crate::resp::parse_integer(arg)
}

/// The user a presence key names, or an error reply naming the key pattern.
pub fn presence_user<'a>(ctx: &mut Ctx<'_>, key: &'a [u8]) -> Option<crate::store::UserKey<'a>> {
    let Some(id) = ctx.server.keyspace.pattern.user_id(key) else {
        let message = ctx.server.keyspace.pattern.mismatch_message(key);
        ctx.out.error(&message);
        return None;
    };
    match ctx.server.store.parse(id) {
        Ok(user) => Some(user),
        Err(err) => {
            ctx.out.error(&err.message());
            None
        }
    }
}

/// Lists a command family's subcommands for `<CMD> HELP`.
pub fn reply_help(out: &mut ReplyBuf, lines: &[&str]) {
    out.array(lines.len());
    for line in lines {
        out.simple(line);
    }
}
