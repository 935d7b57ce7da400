//! Splitting an inline command line into arguments, with the quoting rules of Redis's
//! `sdssplitargs`, so that `redis-cli` without a tty and telnet sessions behave as in Redis.

/// Splits one line (without its line ending) into arguments. `None` means the quotes are
/// unbalanced, which Redis answers with a protocol error. Longer than most: one state machine
/// over the line, kept whole so it reads against `sdssplitargs` branch by branch.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_c_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let c = *line.get(i)?;
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && let (Some(h), Some(l)) = (hex_value(line[i + 2]), hex_value(line[i + 3]))
                {
                    current.push(h * 16 + l);
                    i += 4;
                    continue;
                }
                if c == b'\\' && i + 1 < line.len() {
                    let escaped = match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    };
                    current.push(escaped);
                    i += 2;
                } else if c == b'"' {
                    // A closing quote must be followed by a space or the end of the line.
                    if i + 1 < line.len() && !is_c_space(line[i + 1]) {
                        return None;
                    }
                    in_double = false;
                    i += 1;
                    break;
                } else {
                    current.push(c);
                    i += 1;
                }
            } else if in_single {
                let c = *line.get(i)?;
                if c == b'\\' && i + 1 < line.len() && line[i + 1] == b'\'' {
                    current.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if i + 1 < line.len() && !is_c_space(line[i + 1]) {
                        return None;
                    }
                    in_single = false;
                    i += 1;
                    break;
                } else {
                    current.push(c);
                    i += 1;
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(&c) if ends_unquoted(c) => break,
                    Some(b'"') => {
                        in_double = true;
                        i += 1;
                    }
                    Some(b'\'') => {
                        in_single = true;
                        i += 1;
                    }
                    Some(&c) => {
                        current.push(c);
                        i += 1;
                    }
                }
            }
        }
        debug_assert!(!in_double && !in_single);
        args.push(current);
    }
}

/// C's `isspace` in the "C" locale, which `sdssplitargs` uses to skip blanks between
/// arguments and to check what follows a closing quote. Unlike Rust's `is_ascii_whitespace`
/// it includes 0x0b (vertical tab).
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What ends an unquoted argument in `sdssplitargs`: only these four (and the end of the
/// line). A vertical tab or form feed after the first byte is part of the argument.
fn ends_unquoted(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::split_args;

    fn check(line: &str, expected: Option<&[&str]>) {
        let got = split_args(line.as_bytes());
        let expected: Option<Vec<Vec<u8>>> =
            expected.map(|e| e.iter().map(|s| s.as_bytes().to_vec()).collect());
        assert_eq!(got, expected, "line {line:?}");
    }

    /// The quoting table of `sdssplitargs`, case by case.
    #[test]
    fn splits_like_redis() {
        check("", Some(&[]));
        check("   ", Some(&[]));
        check("PING", Some(&["PING"]));
        check("  HEARTBEAT   42  ", Some(&["HEARTBEAT", "42"]));
        check("SET k \"a b\"", Some(&["SET", "k", "a b"]));
        check("ECHO \"a\\x41b\\n\"", Some(&["ECHO", "aAb\n"]));
        check("ECHO 'it\\'s'", Some(&["ECHO", "it's"]));
        check("ECHO \"\"", Some(&["ECHO", ""]));
        check("ECHO \"abc", None);
        check("ECHO 'abc", None);
        check("ECHO \"a\"b", None);
        check("ECHO 'a'b", None);
        check("ECHO a\"b\"", Some(&["ECHO", "ab"]));
    }

    /// Vertical tab and form feed, as real Redis 7.0 splits them (found by the inline fuzz
    /// target's sdssplitargs oracle): skipped between arguments, accepted after a closing
    /// quote, but part of an unquoted argument.
    #[test]
    fn c_whitespace_like_redis() {
        check("ECHO a\x0bb", Some(&["ECHO", "a\x0bb"]));
        check("ECHO a\x0cb", Some(&["ECHO", "a\x0cb"]));
        check("\x0bECHO x", Some(&["ECHO", "x"]));
        check("\x0c\x0bECHO\x0b z", Some(&["ECHO\x0b", "z"]));
        check("ECHO \"a\"\x0b", Some(&["ECHO", "a"]));
        check("ECHO 'a'\x0b", Some(&["ECHO", "a"]));
        check("ECHO \"a\"\x0c", Some(&["ECHO", "a"]));
    }
}
