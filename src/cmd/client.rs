//! CLIENT and its subcommands: ID, SETNAME, GETNAME, SETINFO, LIST, INFO, KILL, HELP.

use bytes::Bytes;

use super::{CommandSpec, Ctx, SYNTAX_ERROR, parse_i64, printable, reply_help};
use crate::session::Flow;

const fn sub(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "connection", summary, handler)
        .with_acl(&["@slow", "@connection"])
        .with_since("2.4.0")
}

const CONN_FLAGS: &[&str] = &["noscript", "loading", "stale"];

pub const CLIENT: CommandSpec = CommandSpec {
    name: "client",
    arity: -2,
    flags: &[],
    first_key: 0,
    last_key: 0,
    key_step: 0,
    acl_categories: &["@slow"],
    group: "connection",
    since: "2.4.0",
    summary: "A container for client connection commands.",
    complexity: "Depends on subcommand.",
    handler: |_, _| {},
    subcommands: &[
        sub(
            "client|id",
            2,
            CONN_FLAGS,
            "Returns the unique client ID of the connection.",
            id,
        ),
        sub(
            "client|setname",
            3,
            CONN_FLAGS,
            "Sets the connection name.",
            setname,
        ),
        sub(
            "client|getname",
            2,
            CONN_FLAGS,
            "Returns the name of the connection.",
            getname,
        ),
        sub(
            "client|setinfo",
            4,
            CONN_FLAGS,
            "Sets information specific to the client library.",
            setinfo,
        ),
        sub(
            "client|list",
            -2,
            &["admin", "noscript", "loading", "stale"],
            "Lists open connections.",
            list,
        ),
        sub(
            "client|info",
            2,
            CONN_FLAGS,
            "Returns information about this connection.",
            info,
        ),
        sub(
            "client|kill",
            -3,
            &["admin", "noscript", "loading", "stale"],
            "Terminates open connections.",
            kill,
        ),
        sub(
            "client|help",
            2,
            &["loading", "stale"],
            "Returns helpful text about the subcommands.",
            help,
        ),
    ],
    arguments: &[],
};

fn id(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    ctx.out.integer(ctx.session.id() as i64);
}

/// Names and library fields go into `CLIENT LIST` lines, whose fields are separated by spaces:
/// Redis refuses anything but printable ASCII without spaces, and so does presenced.
pub fn validate_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.")
    }
}

fn setname(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    if let Err(message) = validate_name(&args[2]) {
        return ctx.out.error(message);
    }
    ctx.session.client.meta().name = String::from_utf8_lossy(&args[2]).into_owned();
    ctx.out.ok();
}

fn getname(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    let name = ctx.session.client.meta().name.clone();
    if name.is_empty() {
        ctx.out.null();
    } else {
        ctx.out.bulk(name.as_bytes());
    }
}

fn setinfo(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let attr = &args[2];
    let value = &args[3];
    let is_name = attr.eq_ignore_ascii_case(b"lib-name");
    if !is_name && !attr.eq_ignore_ascii_case(b"lib-ver") {
        return ctx.out.error(&format!(
            "ERR Unrecognized option '{}'",
            printable(attr, 128)
        ));
    }
    if validate_name(value).is_err() {
        let field = if is_name { "lib-name" } else { "lib-ver" };
        return ctx.out.error(&format!(
            "ERR {field} cannot contain spaces, newlines or special characters."
        ));
    }
    let value = String::from_utf8_lossy(value).into_owned();
    let mut meta = ctx.session.client.meta();
    if is_name {
        meta.lib_name = value;
    } else {
        meta.lib_ver = value;
    }
    drop(meta);
    ctx.out.ok();
}

fn list(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let mut ids: Option<Vec<u64>> = None;
    let mut type_filter: Option<Vec<u8>> = None;
    let mut rest = &args[2..];
    while let Some(option) = rest.first() {
        if option.eq_ignore_ascii_case(b"TYPE") && rest.len() >= 2 {
            let kind = &rest[1];
            if !kind.eq_ignore_ascii_case(b"normal")
                && !kind.eq_ignore_ascii_case(b"pubsub")
                && !kind.eq_ignore_ascii_case(b"master")
                && !kind.eq_ignore_ascii_case(b"replica")
            {
                return ctx.out.error(&format!(
                    "ERR Unknown client type '{}'",
                    printable(kind, 128)
                ));
            }
            type_filter = Some(kind.to_ascii_lowercase());
            rest = &rest[2..];
        } else if option.eq_ignore_ascii_case(b"ID") && rest.len() >= 2 {
            let mut wanted = Vec::new();
            for arg in &rest[1..] {
                match parse_i64(arg) {
                    Some(id) if id > 0 => wanted.push(id as u64),
                    _ => return ctx.out.error("ERR Invalid client ID"),
                }
            }
            ids = Some(wanted);
            rest = &[];
        } else {
            return ctx.out.error(SYNTAX_ERROR);
        }
    }
    // As in Redis, the caller's own line shows the command running now. The connection
    // records commands once per batch, so the current one is not recorded yet.
    ctx.session.client.meta().last_command = "client|list".to_string();
    let mut text = String::new();
    for client in ctx.server.clients.snapshot() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&client.id)) {
            continue;
        }
        if let Some(kind) = &type_filter {
            // Redis lists a connection with subscriptions as `pubsub`, others as `normal`.
            let meta = client.meta();
            let subscribed = meta.channel_subscriptions + meta.pattern_subscriptions > 0;
            drop(meta);
            let client_kind: &[u8] = if subscribed { b"pubsub" } else { b"normal" };
            if kind.as_slice() != client_kind {
                continue;
            }
        }
        text.push_str(&client.list_line(ctx.now_ms));
        text.push('\n');
    }
    ctx.out.verbatim_text(&text);
}

fn info(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    ctx.session.client.meta().last_command = "client|info".to_string();
    let line = ctx.session.client.list_line(ctx.now_ms) + "\n";
    ctx.out.verbatim_text(&line);
}

fn kill(ctx: &mut Ctx<'_>, args: &[Bytes]) {
    let own_id = ctx.session.id();
    if args.len() == 3 {
        // Old form: CLIENT KILL addr:port. Replies +OK or an error.
        let addr = String::from_utf8_lossy(&args[2]).into_owned();
        let killed = ctx
            .server
            .clients
            .kill_where(|c| c.addr.to_string() == addr && c.id != own_id);
        let me = ctx.session.client.addr.to_string() == addr;
        if me {
            ctx.flow = Flow::Close;
        }
        if killed > 0 || me {
            ctx.out.ok();
        } else {
            ctx.out.error("ERR No such client");
        }
        return;
    }
    let mut filter_id: Option<u64> = None;
    let mut filter_addr: Option<String> = None;
    let mut skip_me = true;
    let mut rest = &args[2..];
    while rest.len() >= 2 {
        let (option, value) = (&rest[0], &rest[1]);
        if option.eq_ignore_ascii_case(b"ID") {
            match parse_i64(value) {
                Some(id) if id > 0 => filter_id = Some(id as u64),
                _ => return ctx.out.error("ERR client-id should be greater than 0"),
            }
        } else if option.eq_ignore_ascii_case(b"ADDR") {
            filter_addr = Some(String::from_utf8_lossy(value).into_owned());
        } else if option.eq_ignore_ascii_case(b"SKIPME") {
            if value.eq_ignore_ascii_case(b"yes") {
                skip_me = true;
            } else if value.eq_ignore_ascii_case(b"no") {
                skip_me = false;
            } else {
                return ctx.out.error(SYNTAX_ERROR);
            }
        } else {
            return ctx.out.error(SYNTAX_ERROR);
        }
        rest = &rest[2..];
    }
    if !rest.is_empty() {
        return ctx.out.error(SYNTAX_ERROR);
    }
    let matches = |id: u64, addr: &str| {
        filter_id.is_none_or(|f| f == id) && filter_addr.as_deref().is_none_or(|f| f == addr)
    };
    let mut killed =
        ctx.server
            .clients
            .kill_where(|c| c.id != own_id && matches(c.id, &c.addr.to_string())) as i64;
    if !skip_me && matches(own_id, &ctx.session.client.addr.to_string()) {
        killed += 1;
        ctx.flow = Flow::Close;
    }
    ctx.out.integer(killed);
}

fn help(ctx: &mut Ctx<'_>, _args: &[Bytes]) {
    reply_help(
        ctx.out,
        &[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ID",
            "    Return the ID of the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "GETNAME",
            "    Return the name of the current connection.",
            "SETINFO <LIB-NAME|LIB-VER> <value>",
            "    Set client library name or version.",
            "LIST [TYPE <type>] [ID <id> [<id> ...]]",
            "    Return information about client connections.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port> | KILL [ID <id>] [ADDR <ip:port>] [SKIPME yes|no]",
            "    Kill connections.",
            "HELP",
            "    Print this help.",
        ],
    );
}
