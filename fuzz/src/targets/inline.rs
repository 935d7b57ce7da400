//! The inline command splitter (`presenced::resp::split_args`) on arbitrary lines.
//!
//! Invariants:
//! - it agrees with `sdssplitargs`: a line-by-line transliteration of Redis's C function
//!   (`src/sds.c`, Redis 7.0) below, an oracle written independently of presenced's state
//!   machine. The one deliberate difference: Redis's C string stops at a NUL byte (and its
//!   inline reader, using `strchr`, never finds the line's end past one), presenced treats NUL
//!   as an ordinary byte; the oracle reads the line by length, as presenced does;
//! - arguments never hold more bytes than the line, nor are more numerous;
//! - quoting the arguments back (`"` with `\xHH` escapes) and splitting again gives them back;
//! - the request decoder, given the line and CRLF, returns exactly these arguments, nothing
//!   for a blank line, or the unbalanced-quotes protocol error; past the inline limit, the
//!   too-big-inline error.

use bytes::BytesMut;
use presenced::limits::{ARGS_MAX_DEFAULT, BULK_LEN_MAX_DEFAULT, INLINE_LINE_MAX};
use presenced::resp::{DecodeLimits, ProtocolError, RequestDecoder, split_args};

/// C's `isspace` in the "C" locale, which `sdssplitargs` uses to skip blanks and to check what
/// follows a closing quote. Note 0x0b (vertical tab), which Rust's `is_ascii_whitespace`
/// leaves out.
fn c_isspace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_hex_digit(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_digit_to_int(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// `sdssplitargs`, transliterated: `at(p)` stands for `*p` (0 past the end, where the C string
/// has its terminator), so every branch reads as in the C source.
pub fn sdssplitargs(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let at = |p: usize| -> u8 { line.get(p).copied().unwrap_or(0) };
    let end = |p: usize| p >= line.len();
    let mut p = 0;
    let mut vector = Vec::new();
    loop {
        // skip blanks
        while !end(p) && c_isspace(at(p)) {
            p += 1;
        }
        if end(p) {
            return Some(vector);
        }
        let mut inq = false;
        let mut insq = false;
        let mut done = false;
        let mut current = Vec::new();
        while !done {
            if inq {
                if at(p) == b'\\'
                    && at(p + 1) == b'x'
                    && !end(p + 2)
                    && is_hex_digit(at(p + 2))
                    && !end(p + 3)
                    && is_hex_digit(at(p + 3))
                {
                    current.push(hex_digit_to_int(at(p + 2)) * 16 + hex_digit_to_int(at(p + 3)));
                    p += 3;
                } else if at(p) == b'\\' && !end(p + 1) {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        c => c,
                    });
                } else if !end(p) && at(p) == b'"' {
                    // closing quote must be followed by a space or nothing at all
                    if !end(p + 1) && !c_isspace(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if end(p) {
                    // unterminated quotes
                    return None;
                } else {
                    current.push(at(p));
                }
            } else if insq {
                if at(p) == b'\\' && !end(p + 1) && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if !end(p) && at(p) == b'\'' {
                    if !end(p + 1) && !c_isspace(at(p + 1)) {
                        return None;
                    }
                    done = true;
                } else if end(p) {
                    return None;
                } else {
                    current.push(at(p));
                }
            } else if end(p) {
                done = true;
            } else {
                match at(p) {
                    b' ' | b'\n' | b'\r' | b'\t' => done = true,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => current.push(c),
                }
            }
            if !end(p) {
                p += 1;
            }
        }
        vector.push(current);
    }
}

/// Quotes arguments so that `split_args` gives them back: double quotes, every byte that is
/// not plain printable ASCII written as `\xHH`.
fn requote(args: &[Vec<u8>]) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.push(b'"');
        for &b in arg {
            if b.is_ascii_graphic() && b != b'"' && b != b'\\' && b != b'\'' {
                line.push(b);
            } else {
                line.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        line.push(b'"');
    }
    line
}

/// The target; returns a coarse label of the outcome.
pub fn check(line: &[u8]) -> String {
    let got = split_args(line);
    assert_eq!(
        got,
        sdssplitargs(line),
        "split_args differs from sdssplitargs on {line:?}"
    );
    if let Some(args) = &got {
        let bytes: usize = args.iter().map(Vec::len).sum();
        assert!(bytes <= line.len() && args.len() <= line.len());
        let quoted = requote(args);
        assert_eq!(
            split_args(&quoted).as_ref(),
            Some(args),
            "requoted {quoted:?}"
        );
    }
    check_decoder_agrees(line, got.as_deref());
    match &got {
        None => "unbalanced".to_string(),
        Some(args) => {
            let count = match args.len() {
                n @ 0..=3 => n.to_string(),
                _ => "4+".to_string(),
            };
            let empty = args.iter().any(Vec::is_empty);
            let spaced = args.iter().any(|a| a.iter().any(|&b| c_isspace(b)));
            format!(
                "{count} args{}{}",
                if empty { " +empty" } else { "" },
                if spaced { " +space" } else { "" }
            )
        }
    }
}

/// The decoder reads `line` CRLF as an inline request split exactly like `split_args` does,
/// when it is one: no LF inside, not a multibulk (`*` first). Past the inline limit (the LF at
/// an offset over `INLINE_LINE_MAX`) it refuses it instead.
fn check_decoder_agrees(line: &[u8], split: Option<&[Vec<u8>]>) {
    if line.contains(&b'\n') || line.first() == Some(&b'*') {
        return;
    }
    let limits = DecodeLimits {
        bulk_len_max: BULK_LEN_MAX_DEFAULT,
        args_max: ARGS_MAX_DEFAULT,
        authenticated: true,
    };
    let mut buf = BytesMut::from(line);
    buf.extend_from_slice(b"\r\n");
    let decoded = RequestDecoder::new().decode(&mut buf, &limits);
    if line.len() + 1 > INLINE_LINE_MAX {
        assert_eq!(
            decoded,
            Err(ProtocolError::InlineTooBig),
            "{} bytes",
            line.len()
        );
        return;
    }
    match split {
        None => assert_eq!(decoded, Err(ProtocolError::UnbalancedQuotes)),
        Some([]) => assert_eq!(decoded, Ok(None), "a blank line is skipped"),
        Some(args) => {
            let decoded = decoded.expect("an inline line decodes").expect("a request");
            let decoded: Vec<Vec<u8>> = decoded.iter().map(|a| a.to_vec()).collect();
            assert_eq!(decoded, args);
        }
    }
    assert!(buf.is_empty(), "the line and its CRLF are consumed");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle itself reproduces what real Redis 7.0 answered (checked with `ECHO` over a
    /// raw socket), including the whitespace cases that differ from Rust's
    /// `is_ascii_whitespace`.
    #[test]
    fn oracle_matches_redis() {
        let split = |line: &[u8]| sdssplitargs(line);
        assert_eq!(
            split(b"ECHO a\x0bb"),
            Some(vec![b"ECHO".to_vec(), b"a\x0bb".to_vec()])
        );
        assert_eq!(
            split(b"ECHO a\x0cb"),
            Some(vec![b"ECHO".to_vec(), b"a\x0cb".to_vec()])
        );
        assert_eq!(
            split(b"\x0bECHO x"),
            Some(vec![b"ECHO".to_vec(), b"x".to_vec()])
        );
        assert_eq!(
            split(b"ECHO \"a\"\x0b"),
            Some(vec![b"ECHO".to_vec(), b"a".to_vec()])
        );
        assert_eq!(
            split(b"ECHO 'a'\x0c"),
            Some(vec![b"ECHO".to_vec(), b"a".to_vec()])
        );
        assert_eq!(
            split(b"\x0c\x0bECHO\x0b z"),
            Some(vec![b"ECHO\x0b".to_vec(), b"z".to_vec()])
        );
        assert_eq!(split(b"ECHO \"a\\"), None);
        assert_eq!(split(b"ECHO \"a\\\""), None);
        assert_eq!(
            split(b"SET k \"a\\x41\\n\" 'it\\'s'"),
            Some(vec![
                b"SET".to_vec(),
                b"k".to_vec(),
                b"aA\n".to_vec(),
                b"it's".to_vec()
            ])
        );
    }

    #[test]
    fn requoting_round_trips() {
        let args = vec![
            b"a b".to_vec(),
            Vec::new(),
            vec![0, b'"', b'\\', 0xff, b'\''],
        ];
        assert_eq!(split_args(&requote(&args)), Some(args));
    }
}
