//! CLIENT and its subcommands: ID, SETNAME, GETNAME, SETINFO, LIST, INFO, KILL, HELP.

use super::{Args, CmdError, CmdResult, CommandSpec, Ctx, printable, reply_help};
use crate::clients::{ClientEntry, CloseReason};
use crate::session::ReplyMode;

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

pub const CLIENT: CommandSpec = CommandSpec::container(
    "client",
    "connection",
    "2.4.0",
    "A container for client connection commands.",
    &[
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
            "client|reply",
            3,
            CONN_FLAGS,
            "Turns replies to this connection's commands on, off, or off for the next one.",
            reply,
        ),
        sub(
            "client|pause",
            -3,
            &["admin", "noscript", "loading", "stale"],
            "Holds back clients' commands (all, or only writes) for a number of milliseconds.",
            pause,
        ),
        sub(
            "client|unpause",
            2,
            &["admin", "noscript", "loading", "stale"],
            "Ends a CLIENT PAUSE.",
            unpause,
        ),
        sub(
            "client|no-evict",
            3,
            CONN_FLAGS,
            "Accepted for compatibility: presenced never evicts clients.",
            no_evict,
        ),
        sub(
            "client|no-touch",
            3,
            CONN_FLAGS,
            "Accepted for compatibility: presenced keeps no access times.",
            no_evict,
        ),
        sub(
            "client|help",
            2,
            &["loading", "stale"],
            "Returns helpful text about the subcommands.",
            help,
        ),
    ],
);

/// `CLIENT REPLY ON|OFF|SKIP`: ON answers +OK; OFF and SKIP answer nothing (the dispatcher
/// drops replies while the mode says so).
fn reply(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let mode = args.required()?;
    ctx.session.reply_mode = if mode.eq_ignore_ascii_case(b"ON") {
        ReplyMode::On
    } else if mode.eq_ignore_ascii_case(b"OFF") {
        ReplyMode::Off
    } else if mode.eq_ignore_ascii_case(b"SKIP") {
        ReplyMode::Skip
    } else {
        return Err(CmdError::Syntax);
    };
    if ctx.session.reply_mode == ReplyMode::On {
        ctx.out.ok();
    }
    Ok(())
}

/// `CLIENT PAUSE timeout [WRITE|ALL]`: Redis's texts for a bad timeout or mode.
fn pause(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let timeout_ms = match crate::resp::parse_integer(args.required()?) {
        Some(ms) if ms >= 0 => ms as u64,
        Some(_) => return Err(CmdError::TimeoutNegative),
        None => return Err(CmdError::TimeoutNotInteger),
    };
    if args.remaining() > 1 {
        return Err(CmdError::SubcommandArguments {
            sub: "PAUSE".to_string(),
            command: "CLIENT".to_string(),
        });
    }
    let writes_only = match args.next() {
        None => false,
        Some(mode) if mode.eq_ignore_ascii_case(b"ALL") => false,
        Some(mode) if mode.eq_ignore_ascii_case(b"WRITE") => true,
        Some(_) => return Err(CmdError::PauseMode),
    };
    let until_ms = ctx.now_ms.saturating_add(timeout_ms);
    ctx.shared.clients.pause(until_ms, writes_only);
    ctx.out.ok();
    Ok(())
}

fn unpause(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.shared.clients.unpause();
    ctx.out.ok();
    Ok(())
}

/// Whether `CLIENT PAUSE` holds this request back now, and until when: in `ALL` mode every
/// request; in `WRITE` mode those that change data (PUBLISH too, and an EXEC queueing one),
/// as Redis does.
pub fn held_by_pause(
    shared: &crate::services::Shared<'_>,
    session: &crate::session::Session,
    spec: &super::CommandSpec,
    now_ms: u64,
) -> Option<u64> {
    let pause = shared.clients.pause_at(now_ms)?;
    let held =
        !pause.writes_only || super::transaction::runs_any(session, spec, super::may_publish);
    held.then_some(pause.until_ms)
}

/// `CLIENT NO-EVICT|NO-TOUCH ON|OFF`: presenced evicts no client and tracks no access time,
/// so either setting is already what the client asks for.
fn no_evict(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let flag = args.required()?;
    if !flag.eq_ignore_ascii_case(b"ON") && !flag.eq_ignore_ascii_case(b"OFF") {
        return Err(CmdError::Syntax);
    }
    ctx.out.ok();
    Ok(())
}

fn id(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.integer(ctx.session.id() as i64);
    Ok(())
}

/// Names and library fields go into `CLIENT LIST` lines, whose fields are separated by spaces:
/// Redis refuses anything but printable ASCII without spaces, and so does presenced.
pub fn validate_name(name: &[u8]) -> CmdResult {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(CmdError::BadClientName)
    }
}

fn setname(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let name = args.required()?;
    validate_name(name)?;
    ctx.session.client.meta().name = String::from_utf8_lossy(name).into_owned();
    ctx.out.ok();
    Ok(())
}

fn getname(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    let name = ctx.session.client.meta().name.clone();
    if name.is_empty() {
        ctx.out.null();
    } else {
        ctx.out.bulk(name.as_bytes());
    }
    Ok(())
}

fn setinfo(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let attr = args.required()?;
    let value = args.required()?;
    let is_name = attr.eq_ignore_ascii_case(b"lib-name");
    if !is_name && !attr.eq_ignore_ascii_case(b"lib-ver") {
        return Err(CmdError::UnrecognizedOption(printable(attr, 128)));
    }
    if validate_name(value).is_err() {
        let field = if is_name { "lib-name" } else { "lib-ver" };
        return Err(CmdError::BadLibField(field));
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
    Ok(())
}

/// `CLIENT LIST [TYPE type] [ID id ...]`'s filters: the IDs, and the type in lower case.
struct ListFilter {
    ids: Option<Vec<u64>>,
    kind: Option<Vec<u8>>,
}

fn list_filters(args: &mut Args<'_>) -> Result<ListFilter, CmdError> {
    let mut ids: Option<Vec<u64>> = None;
    let mut type_filter: Option<Vec<u8>> = None;
    while let Some(option) = args.next() {
        if option.eq_ignore_ascii_case(b"TYPE") && !args.is_empty() {
            type_filter = Some(client_type(args.required()?)?);
        } else if option.eq_ignore_ascii_case(b"ID") && !args.is_empty() {
            let mut wanted = Vec::new();
            for arg in args.rest() {
                match crate::resp::parse_integer(arg) {
                    Some(id) if id > 0 => wanted.push(id as u64),
                    _ => return Err(CmdError::InvalidClientId),
                }
            }
            ids = Some(wanted);
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(ListFilter {
        ids,
        kind: type_filter,
    })
}

fn list(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let ListFilter {
        ids,
        kind: type_filter,
    } = list_filters(args)?;
    // As in Redis, the caller's own line shows the command running now. The connection
    // records commands once per batch, so the current one is not recorded yet.
    ctx.session.client.meta().last_command = "client|list".to_string();
    let mut text = String::new();
    for client in ctx.shared.clients.snapshot() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&client.id)) {
            continue;
        }
        if type_filter
            .as_deref()
            .is_some_and(|kind| kind != kind_of(&client))
        {
            continue;
        }
        text.push_str(&client.list_line(ctx.now_ms));
        text.push('\n');
    }
    ctx.out.verbatim_text(&text);
    Ok(())
}

fn info(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.session.client.meta().last_command = "client|info".to_string();
    let line = ctx.session.client.list_line(ctx.now_ms) + "\n";
    ctx.out.verbatim_text(&line);
    Ok(())
}

/// Which clients `CLIENT KILL [ID id] [ADDR ip:port] [SKIPME yes|no]` names.
struct KillFilter {
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    /// `normal`, `pubsub` or `replica` (`slave` is read as `replica`; `master` matches nobody:
    /// a follower's link to its leader is not a client of its own).
    kind: Option<Vec<u8>>,
    /// Clients connected at least this long ago.
    max_age_s: Option<u64>,
    skip_me: bool,
}

impl KillFilter {
    fn parse(args: &mut Args<'_>) -> Result<KillFilter, CmdError> {
        let mut filter = KillFilter {
            id: None,
            addr: None,
            laddr: None,
            kind: None,
            max_age_s: None,
            skip_me: true,
        };
        while args.remaining() >= 2 {
            let option = args.required()?;
            let value = args.required()?;
            if option.eq_ignore_ascii_case(b"ID") {
                match crate::resp::parse_integer(value) {
                    Some(id) if id > 0 => filter.id = Some(id as u64),
                    _ => return Err(CmdError::ClientIdNotPositive),
                }
            } else if option.eq_ignore_ascii_case(b"ADDR") {
                filter.addr = Some(String::from_utf8_lossy(value).into_owned());
            } else if option.eq_ignore_ascii_case(b"LADDR") {
                filter.laddr = Some(String::from_utf8_lossy(value).into_owned());
            } else if option.eq_ignore_ascii_case(b"TYPE") {
                filter.kind = Some(client_type(value)?);
            } else if option.eq_ignore_ascii_case(b"USER") {
                // Only the default user exists.
                if value.as_ref() != b"default" {
                    return Err(CmdError::NoSuchUser(printable(value, 128)));
                }
            } else if option.eq_ignore_ascii_case(b"MAXAGE") {
                // Redis answers a MAXAGE that is not an integer with a syntax error.
                match crate::resp::parse_integer(value) {
                    Some(age) => filter.max_age_s = Some(age.max(0) as u64),
                    None => return Err(CmdError::Syntax),
                }
            } else if option.eq_ignore_ascii_case(b"SKIPME") {
                if value.eq_ignore_ascii_case(b"yes") {
                    filter.skip_me = true;
                } else if value.eq_ignore_ascii_case(b"no") {
                    filter.skip_me = false;
                } else {
                    return Err(CmdError::Syntax);
                }
            } else {
                return Err(CmdError::Syntax);
            }
        }
        args.finish()?;
        Ok(filter)
    }

    fn matches(&self, client: &ClientEntry, now_ms: u64) -> bool {
        let age_s = now_ms.saturating_sub(client.connected_ms) / 1000;
        self.id.is_none_or(|f| f == client.id)
            && self
                .addr
                .as_deref()
                .is_none_or(|f| f == client.addr.to_string())
            && self
                .laddr
                .as_deref()
                .is_none_or(|f| f == client.local_addr.to_string())
            && self.kind.as_deref().is_none_or(|f| f == kind_of(client))
            && self.max_age_s.is_none_or(|max| age_s >= max)
    }
}

/// A `TYPE` argument in lower case, or Redis's error for an unknown one.
fn client_type(value: &[u8]) -> Result<Vec<u8>, CmdError> {
    let lower = value.to_ascii_lowercase();
    match &lower[..] {
        b"slave" => Ok(b"replica".to_vec()),
        b"normal" | b"pubsub" | b"master" | b"replica" => Ok(lower),
        _ => Err(CmdError::UnknownClientType(printable(value, 128))),
    }
}

/// Redis lists a follower's link as `replica`, a connection with subscriptions as `pubsub`,
/// others as `normal`: Sentinel's `CLIENT KILL TYPE normal` after a failover must not cut the
/// replication links.
fn kind_of(client: &ClientEntry) -> &'static [u8] {
    let meta = client.meta();
    if meta.replica {
        b"replica"
    } else if meta.subscribed() {
        b"pubsub"
    } else {
        b"normal"
    }
}

fn kill(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let own_id = ctx.session.id();
    if args.remaining() == 1 {
        // Old form: CLIENT KILL addr:port. Replies +OK or an error.
        let addr = String::from_utf8_lossy(args.required()?).into_owned();
        let killed = ctx
            .shared
            .clients
            .kill_where(|c| c.addr.to_string() == addr && c.id != own_id);
        let me = ctx.session.client.addr.to_string() == addr;
        if killed == 0 && !me {
            return Err(CmdError::NoSuchClient);
        }
        if me {
            ctx.close(CloseReason::Killed);
        }
        ctx.out.ok();
        return Ok(());
    }
    let filter = KillFilter::parse(args)?;
    let now_ms = ctx.now_ms;
    let mut killed = ctx
        .shared
        .clients
        .kill_where(|c| c.id != own_id && filter.matches(c, now_ms)) as i64;
    if !filter.skip_me && filter.matches(&ctx.session.client, now_ms) {
        killed += 1;
        ctx.close(CloseReason::Killed);
    }
    ctx.out.integer(killed);
    Ok(())
}

fn help(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
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
            "REPLY (ON|OFF|SKIP)",
            "    Control the replies sent to the current connection.",
            "PAUSE <timeout> [WRITE|ALL]",
            "    Suspend clients (all, or only their writes) for <timeout> milliseconds.",
            "UNPAUSE",
            "    Stop the current client pause, resuming traffic.",
            "NO-EVICT (ON|OFF)",
            "    Accepted; presenced never evicts clients.",
            "NO-TOUCH (ON|OFF)",
            "    Accepted; presenced keeps no access times.",
            "KILL <ip:port> | KILL [ID <id>] [ADDR <ip:port>] [LADDR <ip:port>] [TYPE <type>] [USER <user>] [MAXAGE <s>] [SKIPME yes|no]",
            "    Kill connections.",
            "HELP",
            "    Print this help.",
        ],
    )
}
