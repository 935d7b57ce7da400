//! SLOWLOG GET|LEN|RESET|HELP: the slow log (`crate::slowlog`) as Redis 7 shows it. What gets
//! logged is decided by the dispatcher (`meter`); `CONFIG SET slowlog-log-slower-than` and
//! `slowlog-max-len` change the log's settings (`server_admin`).

use super::{ArgSpec, Args, CmdError, CmdResult, CommandSpec, Ctx, printable, reply_help};

const ADMIN_FLAGS: &[&str] = &["admin", "loading", "stale"];

const fn sub(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    summary: &'static str,
    complexity: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(name, arity, flags, "server", summary, handler)
        .with_acl(&["@admin", "@slow", "@dangerous"])
        .with_since("2.2.12")
        .with_complexity(complexity)
}

pub const SLOWLOG: CommandSpec = CommandSpec::container(
    "slowlog",
    "server",
    "2.2.12",
    "A container for slow log commands.",
    &[
        sub(
            "slowlog|get",
            -2,
            ADMIN_FLAGS,
            "Returns the slow log's newest entries (10 by default, all with -1).",
            "O(N) where N is the number of entries returned",
            get,
        )
        .with_arguments(&[ArgSpec {
            name: "count",
            kind: "integer",
            token: None,
            optional: true,
            multiple: false,
        }]),
        sub(
            "slowlog|len",
            2,
            ADMIN_FLAGS,
            "Returns the number of entries in the slow log.",
            "O(1)",
            len,
        ),
        sub(
            "slowlog|reset",
            2,
            ADMIN_FLAGS,
            "Clears all entries from the slow log.",
            "O(N) where N is the number of entries in the slowlog",
            reset,
        ),
        sub(
            "slowlog|help",
            2,
            &["loading", "stale"],
            "Returns helpful text about the different subcommands.",
            "O(1)",
            help,
        )
        .with_acl(&["@slow"]),
    ],
);

/// How many entries `SLOWLOG GET` returns without a count (Redis's).
const GET_COUNT_DEFAULT: usize = 10;

/// `SLOWLOG GET [count]`: each entry is `[id, unix time, microseconds, [args...], "ip:port",
/// client name]`, newest first.
fn get(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    if args.remaining() > 1 {
        // Redis's text names the subcommand and the command as the client typed them.
        let request = args.request();
        let typed = |i: usize| request.get(i).map_or(String::new(), |w| printable(w, 128));
        return Err(CmdError::SubcommandArguments {
            sub: typed(1),
            command: typed(0).to_ascii_uppercase(),
        });
    }
    let count = match args.next() {
        None => GET_COUNT_DEFAULT,
        Some(count) => match crate::resp::parse_integer(count) {
            Some(-1) => usize::MAX,
            Some(n) => usize::try_from(n).map_err(|_| CmdError::SlowlogCount)?,
            None => return Err(CmdError::SlowlogCount),
        },
    };
    let entries = ctx.shared.slowlog.newest(count);
    let out = &mut *ctx.out;
    out.array(entries.len());
    for entry in entries {
        out.array(6);
        out.integer(i64::try_from(entry.id).unwrap_or(i64::MAX));
        out.integer(i64::try_from(entry.time_s).unwrap_or(i64::MAX));
        out.integer(i64::try_from(entry.duration_us).unwrap_or(i64::MAX));
        out.array(entry.args.len());
        for arg in &entry.args {
            out.bulk(arg);
        }
        out.bulk(entry.peer.as_bytes());
        out.bulk(entry.client_name.as_bytes());
    }
    Ok(())
}

fn len(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.integer(ctx.shared.slowlog.len() as i64);
    Ok(())
}

fn reset(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.shared.slowlog.reset();
    ctx.out.ok();
    Ok(())
}

fn help(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    reply_help(
        ctx.out,
        &[
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Prints this help.",
        ],
    )
}
