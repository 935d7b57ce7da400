//! `presenced /path/to/presenced.conf [flags]`: a config file in Redis's `name value` style,
//! read as the flags it spells, and `CONFIG REWRITE`, which writes what changed at run time
//! back into it.
//!
//! Every line is a flag without its dashes (`port 6380`, `replicaof 10.0.0.5 6379`,
//! `huge-pages yes`); `#` starts a comment line; values may be quoted as Redis's are
//! (`"..."` with `\n`, `\"`, `\\` and `\xHH` escapes, or `'...'`). The file's flags come
//! first and the command line's after them, so the command line wins. Each line is checked
//! on its own, so an error names its line.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

/// Redis's older names that presenced reads as the flag they stand for.
const ALIASES: &[(&str, &str)] = &[
    ("slaveof", "replicaof"),
    ("min-slaves-to-write", "min-replicas-to-write"),
    ("min-slaves-max-lag", "min-replicas-max-lag"),
    ("slave-priority", "replica-priority"),
];

/// Flags that are actions, not settings: refused in a file.
const NOT_SETTINGS: &[&str] = &["check-snapshot", "help", "version"];

/// The command line with a leading config file replaced by the flags it holds: `argv[1]`,
/// when it does not start with `-`, is the file (as `redis-server /etc/redis.conf --port 1`).
/// Returns the flags for clap and the file's absolute path.
pub fn expand_argv(argv: Vec<OsString>) -> Result<(Vec<OsString>, Option<PathBuf>), String> {
    let Some(first) = argv.get(1) else {
        return Ok((argv, None));
    };
    if first.to_string_lossy().starts_with('-') {
        return Ok((argv, None));
    }
    let path = std::path::absolute(Path::new(first))
        .map_err(|e| format!("{}: {e}", Path::new(first).display()))?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    let flags = flags_from_text(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut expanded = Vec::with_capacity(argv.len() + flags.len());
    expanded.push(argv[0].clone());
    expanded.extend(flags.into_iter().map(OsString::from));
    expanded.extend(argv.into_iter().skip(2));
    Ok((expanded, Some(path)))
}

/// Every line of a config file as flags, or the first bad line's error (`line N: ...`).
pub fn flags_from_text(text: &str) -> Result<Vec<String>, String> {
    let command = crate::config::Args::command();
    let mut flags = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let words = split_words(line).map_err(|e| format!("line {line_no}: {e}"))?;
        let Some((name, values)) = words.split_first() else {
            continue;
        };
        let line_flags = line_to_flags(&command, name, values)
            .map_err(|e| format!("line {line_no} ('{}'): {e}", line.trim()))?;
        flags.extend(line_flags);
    }
    Ok(flags)
}

/// The canonical name of a setting (aliases resolved, lower case).
pub fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower, |(_, canonical)| canonical.to_string())
}

/// One line as flags, checked on its own: the flag exists, its value count and values parse.
fn line_to_flags(
    command: &clap::Command,
    name: &str,
    values: &[String],
) -> Result<Vec<String>, String> {
    let name = canonical_name(name);
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(name.as_str()))
        .filter(|_| !NOT_SETTINGS.contains(&name.as_str()))
        .ok_or_else(|| format!("unknown setting '{name}'"))?;
    let flag = format!("--{name}");
    let flags = if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
        match values {
            [v] if v.eq_ignore_ascii_case("yes") => vec![flag],
            [v] if v.eq_ignore_ascii_case("no") => Vec::new(),
            _ => return Err("expected yes or no".to_string()),
        }
    } else {
        if values.is_empty() {
            return Err("a value is missing".to_string());
        }
        // `--flag=value` keeps a value that starts with '-' (a negative number) a value.
        match values {
            [one] => vec![format!("{flag}={one}")],
            many => std::iter::once(flag).chain(many.iter().cloned()).collect(),
        }
    };
    let check = std::iter::once("presenced".to_string()).chain(flags.iter().cloned());
    <crate::config::Args as clap::Parser>::try_parse_from(check).map_err(|e| clap_message(&e))?;
    Ok(flags)
}

/// clap's error without its `error: ` prefix and usage lines.
fn clap_message(err: &clap::Error) -> String {
    let rendered = err.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Splits a line into words as Redis's `sdssplitargs` does: blanks separate words, `"..."`
/// takes escapes, `'...'` takes none (but `\'`), and a closing quote must be followed by a
/// blank or the end. A line whose first non-blank character is `#` is a comment.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Vec::new());
    }
    let mut words = Vec::new();
    let mut chars = trimmed.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Ok(words);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unbalanced quotes".to_string()),
                    Some(c) if c == first => break,
                    Some('\\') if first == '"' => match chars.next() {
                        Some('n') => word.push('\n'),
                        Some('r') => word.push('\r'),
                        Some('t') => word.push('\t'),
                        Some('x') => {
                            let hex: String = chars.by_ref().take(2).collect();
                            let byte = u8::from_str_radix(&hex, 16)
                                .map_err(|_| format!("bad escape \\x{hex}"))?;
                            word.push(char::from(byte));
                        }
                        Some(c) => word.push(c),
                        None => return Err("unbalanced quotes".to_string()),
                    },
                    Some('\\') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        word.push('\'');
                    }
                    Some(c) => word.push(c),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err("a closing quote must be followed by a space".to_string());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
}

/// A word as a config file spells it: bare if it can be, else double-quoted with escapes.
pub fn quote_word(word: &str) -> String {
    let bare = !word.is_empty()
        && !word.starts_with(['"', '\'', '#'])
        && word
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\'');
    if bare {
        return word.to_string();
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The marker Redis writes above the lines `CONFIG REWRITE` adds.
const GENERATED_MARKER: &str = "# Generated by CONFIG REWRITE";

/// A setting `CONFIG REWRITE` writes: its canonical name, its words now (`None`: no line, as
/// for `replicaof` on a leader), and whether that is its default (a default is written only
/// over a line the file already has).
pub struct Managed {
    pub name: &'static str,
    pub words: Option<Vec<String>>,
    pub is_default: bool,
}

/// `text` with each managed setting's line replaced: its words are written where its first
/// line was (or appended under the marker, unless they are the default), `None` removes its
/// lines. Every other line, comments included, is kept as it was; later duplicates of a
/// managed setting are dropped, so the file says one thing.
pub fn rewrite_text(text: &str, managed: &[Managed]) -> String {
    let mut written = vec![false; managed.len()];
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        let name = split_words(line)
            .ok()
            .and_then(|words| words.first().map(|n| canonical_name(n)));
        let position = name
            .as_deref()
            .and_then(|n| managed.iter().position(|m| m.name == n));
        match position {
            None => {
                out.push_str(line);
                out.push('\n');
            }
            Some(i) => {
                if !written[i]
                    && let Some(words) = &managed[i].words
                {
                    out.push_str(&setting_line(managed[i].name, words));
                }
                written[i] = true;
            }
        }
    }
    let missing: Vec<&Managed> = managed
        .iter()
        .zip(&written)
        .filter(|(m, written)| !**written && m.words.is_some() && !m.is_default)
        .map(|(m, _)| m)
        .collect();
    if !missing.is_empty() {
        if !text.lines().any(|l| l.trim() == GENERATED_MARKER) {
            out.push_str(GENERATED_MARKER);
            out.push('\n');
        }
        for m in missing {
            if let Some(words) = &m.words {
                out.push_str(&setting_line(m.name, words));
            }
        }
    }
    out
}

/// Whether `value` is the flag `name`'s default.
pub fn is_default(name: &str, value: &str) -> bool {
    crate::config::Args::command()
        .get_arguments()
        .find(|a| a.get_long() == Some(name))
        .is_some_and(|a| {
            let defaults = a.get_default_values();
            match defaults {
                [] => value.is_empty(),
                [one] => one.to_string_lossy() == value,
                _ => false,
            }
        })
}

fn setting_line(name: &str, words: &[String]) -> String {
    let mut line = name.to_string();
    for word in words {
        line.push(' ');
        line.push_str(&quote_word(word));
    }
    line.push('\n');
    line
}

/// Rewrites the file at `path` (see `rewrite_text`): written beside it, synced, renamed over
/// it, so a crash leaves the old file or the new one, never half of one. One rewrite at a
/// time.
pub fn rewrite(path: &Path, managed: &[Managed]) -> std::io::Result<()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let text = std::fs::read_to_string(path)?;
    let new_text = rewrite_text(&text, managed);
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".rewrite-tmp");
    let temp = PathBuf::from(temp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(new_text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap()
    }

    #[test]
    fn words_split_as_redis_splits_them() {
        assert!(words("  # a comment").is_empty());
        assert!(words("").is_empty());
        assert_eq!(words("port 6380"), ["port", "6380"]);
        assert_eq!(
            words("  replicaof   10.0.0.5\t6379 "),
            ["replicaof", "10.0.0.5", "6379"]
        );
        assert_eq!(
            words(r#"requirepass "a b\"c\\d\x41""#),
            ["requirepass", "a b\"c\\dA"]
        );
        assert_eq!(words("requirepass 'it\\'s'"), ["requirepass", "it's"]);
        assert_eq!(
            words(r#"notify-keyspace-events """#),
            ["notify-keyspace-events", ""]
        );
        assert!(split_words(r#"requirepass "open"#).is_err());
        assert!(split_words(r#"requirepass "a"b"#).is_err());
    }

    #[test]
    fn quoted_words_read_back_as_written() {
        for word in [
            "plain",
            "",
            "a b",
            "q\"uote",
            "back\\slash",
            "new\nline",
            "#hash",
            "'",
        ] {
            let line = format!("requirepass {}", quote_word(word));
            assert_eq!(words(&line), ["requirepass", word], "{line}");
        }
    }

    #[test]
    fn lines_become_flags_and_bad_lines_name_their_line() {
        let text = "# presenced.conf\nport 6380\n\nhuge-pages yes\nrequire-snapshot no\n\
                    slaveof 127.0.0.1 6379\nmin-slaves-to-write 1\nslowlog-log-slower-than -1\n";
        assert_eq!(
            flags_from_text(text).unwrap(),
            [
                "--port=6380",
                "--huge-pages",
                "--replicaof",
                "127.0.0.1",
                "6379",
                "--min-replicas-to-write=1",
                "--slowlog-log-slower-than=-1",
            ]
        );
        let cases = [
            (
                "port 6380\nportt 1\n",
                "line 2 ('portt 1'): unknown setting 'portt'",
            ),
            (
                "port abc\n",
                "line 1 ('port abc'): invalid value 'abc' for '--port <PORT>'",
            ),
            (
                "huge-pages maybe\n",
                "line 1 ('huge-pages maybe'): expected yes or no",
            ),
            ("port\n", "line 1 ('port'): a value is missing"),
            ("replicaof 127.0.0.1\n", "line 1 ('replicaof 127.0.0.1'):"),
            (
                "check-snapshot /x\n",
                "line 1 ('check-snapshot /x'): unknown setting",
            ),
            ("requirepass \"open\n", "line 1: unbalanced quotes"),
        ];
        for (text, expected) in cases {
            let err = flags_from_text(text).unwrap_err();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn defaults_are_the_flags_defaults() {
        assert!(is_default("maxmemory", "0"));
        assert!(!is_default("maxmemory", "1024"));
        assert!(is_default("notify-keyspace-events", ""));
        assert!(is_default("min-replicas-max-lag", "10"));
    }

    #[test]
    fn rewrite_keeps_comments_replaces_managed_lines_and_appends_new_ones() {
        let text = "# my presenced\nport 6380\n\
                    slaveof 10.0.0.1 6379\n# keep me\nmaxmemory 1gb\nreplicaof 10.0.0.2 6379\n";
        let set = |name, words: &[&str], is_default| Managed {
            name,
            words: Some(words.iter().map(|w| w.to_string()).collect()),
            is_default,
        };
        let managed = [
            set("replicaof", &["127.0.0.1", "7000"], false),
            set("maxmemory", &["2147483648"], false),
            set("min-replicas-to-write", &["1"], false),
            // A default the file does not have is not added.
            set("slowlog-max-len", &["128"], true),
        ];
        let out = rewrite_text(text, &managed);
        assert_eq!(
            out,
            "# my presenced\nport 6380\n\
             replicaof 127.0.0.1 7000\n# keep me\nmaxmemory 2147483648\n\
             # Generated by CONFIG REWRITE\nmin-replicas-to-write 1\n"
        );
        // Rewriting again changes nothing; a leader's rewrite removes the role's line.
        assert_eq!(rewrite_text(&out, &managed), out);
        let leader = rewrite_text(
            &out,
            &[Managed {
                name: "replicaof",
                words: None,
                is_default: true,
            }],
        );
        assert!(!leader.contains("replicaof"), "{leader}");
        assert!(
            leader.contains("# keep me\nmaxmemory 2147483648\n"),
            "{leader}"
        );
    }
}
