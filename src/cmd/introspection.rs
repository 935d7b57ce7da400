//! COMMAND: the command table as clients and tools read it (COUNT, INFO, DOCS, LIST).

use super::{
    Args, CmdError, CmdResult, CommandSpec, Ctx, commands, lookup, lookup_subcommand, reply_help,
};
use crate::resp::ReplyBuf;

const fn sub(
    name: &'static str,
    arity: i32,
    summary: &'static str,
    handler: super::Handler,
) -> CommandSpec {
    CommandSpec::new(
        name,
        arity,
        &["loading", "stale"],
        "server",
        summary,
        handler,
    )
    .with_acl(&["@slow", "@connection"])
    .with_since("2.8.13")
    .with_complexity("O(N) where N is the number of commands")
}

pub const COMMAND: CommandSpec = CommandSpec {
    name: "command",
    arity: -1,
    flags: &["loading", "stale"],
    first_key: 0,
    last_key: 0,
    key_step: 0,
    acl_categories: &["@slow", "@connection"],
    group: "server",
    since: "2.8.13",
    summary: "Returns detailed information about all commands.",
    complexity: "O(N) where N is the total number of commands",
    handler: all,
    subcommands: &[
        sub("command|count", 2, "Returns a count of commands.", count),
        sub(
            "command|info",
            -2,
            "Returns information about one, multiple or all commands.",
            info,
        ),
        sub(
            "command|docs",
            -2,
            "Returns documentary information about one, multiple or all commands.",
            docs,
        ),
        sub("command|list", -2, "Returns a list of command names.", list),
        sub(
            "command|getkeys",
            -4,
            "Extracts the key names from an arbitrary command.",
            getkeys,
        ),
        sub(
            "command|help",
            2,
            "Returns helpful text about the different subcommands.",
            help,
        ),
    ],
    arguments: &[],
};

fn all(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.array(commands().len());
    for spec in commands() {
        write_info(ctx.out, spec);
    }
    Ok(())
}

fn count(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    ctx.out.integer(commands().len() as i64);
    Ok(())
}

fn info(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let names = args.rest();
    if names.is_empty() {
        return all(ctx, args);
    }
    ctx.out.array(names.len());
    for name in names {
        match find(name) {
            Some(spec) => write_info(ctx.out, spec),
            None => ctx.out.null(),
        }
    }
    Ok(())
}

fn docs(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let names = args.rest();
    let specs: Vec<&CommandSpec> = if names.is_empty() {
        commands().iter().collect()
    } else {
        names.iter().filter_map(|name| find(name)).collect()
    };
    ctx.out.map(specs.len());
    for spec in specs {
        ctx.out.bulk(spec.name.as_bytes());
        write_doc(ctx.out, spec);
    }
    Ok(())
}

/// `FILTERBY MODULE name | ACLCAT category | PATTERN glob`: the names it keeps. presenced has
/// no modules.
fn filtered_names(kind: &[u8], value: &[u8]) -> Result<Vec<&'static str>, CmdError> {
    if kind.eq_ignore_ascii_case(b"PATTERN") {
        Ok(commands()
            .iter()
            .map(|c| c.name)
            .filter(|n| crate::glob::glob_match(value, n.as_bytes(), true))
            .collect())
    } else if kind.eq_ignore_ascii_case(b"ACLCAT") {
        let wanted = format!("@{}", String::from_utf8_lossy(value).to_ascii_lowercase());
        Ok(commands()
            .iter()
            .filter(|c| c.acl_categories.contains(&wanted.as_str()))
            .map(|c| c.name)
            .collect())
    } else if kind.eq_ignore_ascii_case(b"MODULE") {
        Ok(Vec::new())
    } else {
        Err(CmdError::Syntax)
    }
}

fn list(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let names: Vec<&str> = if args.is_empty() {
        commands().iter().map(|c| c.name).collect()
    } else {
        if args.remaining() != 3 || !args.eat(b"FILTERBY") {
            return Err(CmdError::Syntax);
        }
        let kind = args.required()?;
        filtered_names(kind, args.required()?)?
    };
    ctx.out.array(names.len());
    for name in names {
        ctx.out.bulk(name.as_bytes());
    }
    Ok(())
}

fn help(ctx: &mut Ctx<'_>, _args: &mut Args<'_>) -> CmdResult {
    reply_help(
        ctx.out,
        &[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands in this server.",
            "LIST [FILTERBY (MODULE <name>|ACLCAT <cat>|PATTERN <pattern>)]",
            "    Return a list of all commands in this server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple commands.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple commands.",
            "GETKEYS <full-command>",
            "    Return the keys from a full Redis command.",
            "HELP",
            "    Print this help.",
        ],
    )
}

/// `COMMAND GETKEYS command arg ...`: the arguments the command table says are keys (a
/// presence command's users, a drop-in command's keys), with Redis's errors.
fn getkeys(ctx: &mut Ctx<'_>, args: &mut Args<'_>) -> CmdResult {
    let request = args.rest();
    let Some(spec) = request.first().and_then(|name| lookup(name)) else {
        return Err(CmdError::GetKeysUnknownCommand);
    };
    let spec = match request.get(1) {
        Some(sub) if !spec.subcommands.is_empty() => {
            lookup_subcommand(spec, sub).ok_or(CmdError::GetKeysUnknownCommand)?
        }
        _ => spec,
    };
    if !spec.arity_ok(request.len()) {
        return Err(CmdError::GetKeysWrongArity);
    }
    if spec.first_key <= 0 || names_channels(spec) {
        return Err(CmdError::GetKeysNoKeys);
    }
    let first = spec.first_key as usize;
    let last = if spec.last_key < 0 {
        request.len() as i64 + i64::from(spec.last_key)
    } else {
        i64::from(spec.last_key)
    };
    let step = spec.key_step.max(1) as usize;
    let keys: Vec<&[u8]> = (first..=last.max(0) as usize)
        .step_by(step)
        .filter_map(|i| request.get(i).map(|k| &k[..]))
        .collect();
    ctx.out.array(keys.len());
    for key in keys {
        ctx.out.bulk(key);
    }
    Ok(())
}

/// Sharded pub/sub names shard channels where keys go, so that a cluster routes them by
/// slot; Redis flags that key spec `not_key`, and `COMMAND GETKEYS` lists none of them.
fn names_channels(spec: &CommandSpec) -> bool {
    spec.group == "pubsub" && spec.first_key > 0
}

/// A command by name, or a subcommand by `parent|sub`.
fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    match name.iter().position(|&b| b == b'|') {
        None => lookup(name),
        Some(bar) => lookup_subcommand(lookup(&name[..bar])?, &name[bar + 1..]),
    }
}

/// Redis 7's ten-element command description.
fn write_info(out: &mut ReplyBuf, spec: &CommandSpec) {
    out.array(10);
    out.bulk(spec.name.as_bytes());
    out.integer(i64::from(spec.arity));
    out.set(spec.flags.len());
    for flag in spec.flags {
        out.simple(flag);
    }
    out.integer(i64::from(spec.first_key));
    out.integer(i64::from(spec.last_key));
    out.integer(i64::from(spec.key_step));
    out.set(spec.acl_categories.len());
    for category in spec.acl_categories {
        out.simple(category);
    }
    out.array(0);
    if spec.first_key > 0 {
        write_key_spec(out, spec);
    } else {
        out.array(0);
    }
    out.array(spec.subcommands.len());
    for sub in spec.subcommands {
        write_info(out, sub);
    }
}

/// One key specification: keys start at `first_key` and run to `last_key` (relative to the
/// end when negative), as Redis's `begin_search index` / `find_keys range` spec says.
fn write_key_spec(out: &mut ReplyBuf, spec: &CommandSpec) {
    let write = spec.flags.contains(&"write");
    out.array(1);
    out.map(3);
    out.bulk(b"flags");
    if names_channels(spec) {
        out.set(1);
        out.simple("not_key");
    } else {
        out.set(2);
        out.simple(if write { "RW" } else { "RO" });
        out.simple(if write { "update" } else { "access" });
    }
    out.bulk(b"begin_search");
    out.map(2);
    out.bulk(b"type");
    out.bulk(b"index");
    out.bulk(b"spec");
    out.map(1);
    out.bulk(b"index");
    out.integer(i64::from(spec.first_key));
    out.bulk(b"find_keys");
    out.map(2);
    out.bulk(b"type");
    out.bulk(b"range");
    out.bulk(b"spec");
    out.map(3);
    out.bulk(b"lastkey");
    out.integer(if spec.last_key < 0 {
        i64::from(spec.last_key)
    } else {
        i64::from(spec.last_key - spec.first_key)
    });
    out.bulk(b"keystep");
    out.integer(i64::from(spec.key_step));
    out.bulk(b"limit");
    out.integer(0);
}

fn write_doc(out: &mut ReplyBuf, spec: &CommandSpec) {
    let has_subcommands = !spec.subcommands.is_empty();
    let has_arguments = !spec.arguments.is_empty();
    out.map(4 + usize::from(has_subcommands) + usize::from(has_arguments));
    out.bulk(b"summary");
    out.bulk(spec.summary.as_bytes());
    out.bulk(b"since");
    out.bulk(spec.since.as_bytes());
    out.bulk(b"group");
    out.bulk(spec.group.as_bytes());
    out.bulk(b"complexity");
    out.bulk(spec.complexity.as_bytes());
    if has_arguments {
        out.bulk(b"arguments");
        out.array(spec.arguments.len());
        for arg in spec.arguments {
            let flags: Vec<&str> = [(arg.optional, "optional"), (arg.multiple, "multiple")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, flag)| *flag)
                .collect();
            let key_spec = arg.kind == "key";
            out.map(
                2 + usize::from(arg.token.is_some())
                    + usize::from(!flags.is_empty())
                    + usize::from(key_spec),
            );
            out.bulk(b"name");
            out.bulk(arg.name.as_bytes());
            out.bulk(b"type");
            out.bulk(arg.kind.as_bytes());
            if key_spec {
                out.bulk(b"key_spec_index");
                out.integer(0);
            }
            if let Some(token) = arg.token {
                out.bulk(b"token");
                out.bulk(token.as_bytes());
            }
            if !flags.is_empty() {
                out.bulk(b"flags");
                out.array(flags.len());
                for flag in flags {
                    out.simple(flag);
                }
            }
        }
    }
    if has_subcommands {
        out.bulk(b"subcommands");
        out.map(spec.subcommands.len());
        for sub in spec.subcommands {
            out.bulk(sub.name.as_bytes());
            write_doc(out, sub);
        }
    }
}
