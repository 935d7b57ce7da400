//! The request decoder: RESP multibulk arrays of bulk strings, and inline command lines.
//!
//! Decoding is resumable: a request that arrives in many reads is not re-parsed from its first
//! argument on every read, so a client dripping one byte at a time costs O(bytes), not O(n^2).
//! Incomplete input is not an error: `decode` returns `Ok(None)` and waits for more bytes.

use bytes::{Bytes, BytesMut};

use super::inline::split_args;
use crate::limits::{INLINE_LINE_MAX, UNAUTHENTICATED_ARGS_MAX, UNAUTHENTICATED_BULK_LEN_MAX};

/// What a client may declare, fixed per connection and per authentication state.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub bulk_len_max: usize,
    pub args_max: usize,
    pub authenticated: bool,
}

/// A violation of the protocol. The connection answers with `message()` and is closed, as
/// Redis does, because the byte stream can no longer be trusted to be in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    InlineTooBig,
    UnbalancedQuotes,
    MultibulkCountTooBig,
    InvalidMultibulkLength,
    UnauthenticatedMultibulkLength,
    BulkCountTooBig,
    ExpectedBulk(u8),
    InvalidBulkLength,
    UnauthenticatedBulkLength,
}

impl ProtocolError {
    /// The exact text Redis sends, without the leading `-`.
    pub fn message(&self) -> String {
        let detail = match self {
            ProtocolError::InlineTooBig => "too big inline request".to_string(),
            ProtocolError::UnbalancedQuotes => "unbalanced quotes in request".to_string(),
            ProtocolError::MultibulkCountTooBig => "too big mbulk count string".to_string(),
            ProtocolError::InvalidMultibulkLength => "invalid multibulk length".to_string(),
            ProtocolError::UnauthenticatedMultibulkLength => {
                "unauthenticated multibulk length".to_string()
            }
            ProtocolError::BulkCountTooBig => "too big bulk count string".to_string(),
            ProtocolError::ExpectedBulk(got) => format!("expected '$', got '{}'", *got as char),
            ProtocolError::InvalidBulkLength => "invalid bulk length".to_string(),
            ProtocolError::UnauthenticatedBulkLength => "unauthenticated bulk length".to_string(),
        };
        format!("ERR Protocol error: {detail}")
    }
}

/// Progress through the request at the front of the buffer.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    /// Arguments the current multibulk declared; 0 between requests.
    args_expected: usize,
    /// Bytes of the buffer already parsed into `arg_ranges`.
    parsed_len: usize,
    arg_ranges: Vec<(usize, usize)>,
}

impl RequestDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while a multibulk request has been started but not completed.
    pub fn in_request(&self) -> bool {
        self.args_expected > 0
    }

    /// Decodes the next complete request at the front of `buf`, removes it from `buf` and puts
    /// its arguments in `args` (cleared first; its capacity is reused, so a connection stops
    /// allocating for arguments once its vector has grown to its largest request). Returns
    /// false when no complete request is buffered yet.
    pub fn decode_into(
        &mut self,
        buf: &mut BytesMut,
        limits: &DecodeLimits,
        args: &mut Vec<Bytes>,
    ) -> Result<bool, ProtocolError> {
        args.clear();
        self.decode_with(buf, limits, args)
    }

    /// As `decode_into`, returning a fresh vector.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &DecodeLimits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut args = Vec::new();
        Ok(self.decode_with(buf, limits, &mut args)?.then_some(args))
    }

    // Longer than most: the resumable decoder's states in one match, so every transition and
    // every Redis error text is visible in one place.
    fn decode_with(
        &mut self,
        buf: &mut BytesMut,
        limits: &DecodeLimits,
        args: &mut Vec<Bytes>,
    ) -> Result<bool, ProtocolError> {
        loop {
            if self.args_expected == 0 {
                let Some(&first) = buf.first() else {
                    return Ok(false);
                };
                if first != b'*' {
                    match decode_inline(buf)? {
                        InlineOutcome::Incomplete => return Ok(false),
                        InlineOutcome::Empty => continue,
                        InlineOutcome::Args(inline_args) => {
                            args.extend(inline_args);
                            return Ok(true);
                        }
                    }
                }
                let Some((count, header_len)) = parse_header(buf, 0, HeaderKind::Multibulk)? else {
                    return Ok(false);
                };
                if count > i64::from(i32::MAX) || count > limits.args_max as i64 {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                if !limits.authenticated && count > UNAUTHENTICATED_ARGS_MAX as i64 {
                    return Err(ProtocolError::UnauthenticatedMultibulkLength);
                }
                if count <= 0 {
                    // `*0` and `*-1` are empty requests: Redis skips them silently.
                    let _ = buf.split_to(header_len);
                    continue;
                }
                self.args_expected = count as usize;
                self.parsed_len = header_len;
                self.arg_ranges.clear();
                self.arg_ranges.reserve(self.args_expected.min(1024));
            }

            while self.arg_ranges.len() < self.args_expected {
                let Some(&kind) = buf.get(self.parsed_len) else {
                    return Ok(false);
                };
                if kind != b'$' {
                    return Err(ProtocolError::ExpectedBulk(kind));
                }
                let Some((len, header_len)) = parse_header(buf, self.parsed_len, HeaderKind::Bulk)?
                else {
                    return Ok(false);
                };
                if len < 0 || len as u64 > limits.bulk_len_max as u64 {
                    return Err(ProtocolError::InvalidBulkLength);
                }
                if !limits.authenticated && len as usize > UNAUTHENTICATED_BULK_LEN_MAX {
                    return Err(ProtocolError::UnauthenticatedBulkLength);
                }
                let body_start = self.parsed_len + header_len;
                let body_end = body_start + len as usize;
                // Like Redis, the two bytes after the body are taken as its CRLF unseen.
                if buf.len() < body_end + 2 {
                    // Room for what is declared, up to 1 MiB at a time: a declared length is
                    // not trusted with memory before its bytes arrive.
                    buf.reserve((body_end + 2 - buf.len()).min(1 << 20));
                    return Ok(false);
                }
                self.arg_ranges.push((body_start, body_end));
                self.parsed_len = body_end + 2;
            }

            let frame = buf.split_to(self.parsed_len).freeze();
            args.extend(
                self.arg_ranges
                    .iter()
                    .map(|&(start, end)| frame.slice(start..end)),
            );
            self.args_expected = 0;
            self.parsed_len = 0;
            self.arg_ranges.clear();
            return Ok(true);
        }
    }
}

enum InlineOutcome {
    Incomplete,
    Empty,
    Args(Vec<Bytes>),
}

fn decode_inline(buf: &mut BytesMut) -> Result<InlineOutcome, ProtocolError> {
    let Some(newline) = memchr(b'\n', buf) else {
        if buf.len() > INLINE_LINE_MAX {
            return Err(ProtocolError::InlineTooBig);
        }
        return Ok(InlineOutcome::Incomplete);
    };
    if newline > INLINE_LINE_MAX {
        return Err(ProtocolError::InlineTooBig);
    }
    let line = buf.split_to(newline + 1);
    let mut line = &line[..newline];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let args = split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
    if args.is_empty() {
        return Ok(InlineOutcome::Empty);
    }
    Ok(InlineOutcome::Args(
        args.into_iter().map(Bytes::from).collect(),
    ))
}

#[derive(Clone, Copy)]
enum HeaderKind {
    Multibulk,
    Bulk,
}

/// Parses `*<n>\r\n` or `$<n>\r\n` starting at `start`: the number and the header's length.
fn parse_header(
    buf: &[u8],
    start: usize,
    kind: HeaderKind,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = &buf[start..];
    let Some(cr) = memchr(b'\r', rest) else {
        if rest.len() > INLINE_LINE_MAX {
            return Err(match kind {
                HeaderKind::Multibulk => ProtocolError::MultibulkCountTooBig,
                HeaderKind::Bulk => ProtocolError::BulkCountTooBig,
            });
        }
        return Ok(None);
    };
    if cr > INLINE_LINE_MAX {
        return Err(match kind {
            HeaderKind::Multibulk => ProtocolError::MultibulkCountTooBig,
            HeaderKind::Bulk => ProtocolError::BulkCountTooBig,
        });
    }
    // Redis waits for the byte after CR and then skips it without looking at it.
    if rest.len() < cr + 2 {
        return Ok(None);
    }
    let value = parse_redis_integer(&rest[1..cr]).ok_or(match kind {
        HeaderKind::Multibulk => ProtocolError::InvalidMultibulkLength,
        HeaderKind::Bulk => ProtocolError::InvalidBulkLength,
    })?;
    Ok(Some((value, cr + 2)))
}

/// Redis's `string2ll`: an optional `-`, then digits with no leading zero (`0` alone is fine),
/// no `+`, no spaces, and no overflow.
pub fn parse_redis_integer(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    match digits {
        [] => return None,
        [b'0'] => return if negative { None } else { Some(0) },
        [b'0', ..] => return None,
        _ => {}
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if value > i64::MAX as u64 + 1 {
            return None;
        }
        Some((value as i64).wrapping_neg())
    } else {
        i64::try_from(value).ok()
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        bulk_len_max: 512 * 1024 * 1024,
        args_max: 1024 * 1024,
        authenticated: true,
    };

    type Outcome = Result<Vec<Vec<String>>, ProtocolError>;

    /// Feeds `input` in one piece and collects every request decoded before it runs dry.
    fn decode_all(input: &[u8], limits: &DecodeLimits) -> Outcome {
        let mut decoder = RequestDecoder::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = decoder.decode(&mut buf, limits)? {
            out.push(
                args.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            );
        }
        Ok(out)
    }

    fn check(input: &[u8], expected: Outcome) {
        assert_eq!(decode_all(input, &LIMITS), expected, "input {input:?}");
    }

    fn ok(reqs: &[&[&str]]) -> Outcome {
        Ok(reqs
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect())
    }

    /// The edge-case table, each row checked against what real Redis answers.
    #[test]
    fn decodes_like_redis() {
        use ProtocolError::*;
        check(b"*1\r\n$4\r\nPING\r\n", ok(&[&["PING"]]));
        check(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", ok(&[&["ECHO", ""]]));
        check(b"PING\r\n", ok(&[&["PING"]]));
        check(b"PING\nPING\n", ok(&[&["PING"], &["PING"]]));
        check(b"\r\n\r\nPING\n", ok(&[&["PING"]]));
        check(b"*0\r\nPING\r\n", ok(&[&["PING"]]));
        check(b"*-1\r\nPING\r\n", ok(&[&["PING"]]));
        check(b"*1\r\n$4\r\nPING", ok(&[]));
        check(b"*1\r\n$4\r\nPING\n", ok(&[]));
        check(b"*1\r\n$4\r\nPINGxx", ok(&[&["PING"]]));
        check(b"*1\r\n$-1\r\n", Err(InvalidBulkLength));
        check(b"*1\r\n$-0\r\n", Err(InvalidBulkLength));
        check(b"*1\r\n$04\r\nPING\r\n", Err(InvalidBulkLength));
        check(b"*1\r\n$600000000\r\n", Err(InvalidBulkLength));
        check(b"*2\r\n:1\r\n", Err(ExpectedBulk(b':')));
        check(b"*abc\r\n", Err(InvalidMultibulkLength));
        check(b"*01\r\n", Err(InvalidMultibulkLength));
        check(b"*+1\r\n", Err(InvalidMultibulkLength));
        check(b"*3000000000\r\n", Err(InvalidMultibulkLength));
        check(b"*2000000\r\n", Err(InvalidMultibulkLength));
        check(b"\"abc\r\n", Err(UnbalancedQuotes));
        check(&[b'x'; 70_000], Err(InlineTooBig));
        let mut big_count = b"*".to_vec();
        big_count.extend([b'1'; 70_000]);
        check(&big_count, Err(MultibulkCountTooBig));
        let mut big_bulk = b"*1\r\n$".to_vec();
        big_bulk.extend([b'1'; 70_000]);
        check(&big_bulk, Err(BulkCountTooBig));
    }

    /// Splitting a pipeline of requests at every byte offset yields the same requests.
    #[test]
    fn every_split_point_gives_the_same_requests() {
        let input: &[u8] =
            b"*2\r\n$9\r\nHEARTBEAT\r\n$2\r\n42\r\nSTATUS 42\r\n*3\r\n$7\r\nMSTATUS\r\n$1\r\n1\r\n$0\r\n\r\n";
        let whole = decode_all(input, &LIMITS).expect("valid input");
        assert_eq!(whole.len(), 3);
        for split in 0..=input.len() {
            let mut decoder = RequestDecoder::new();
            let mut buf = BytesMut::from(&input[..split]);
            let mut got = Vec::new();
            while let Some(args) = decoder.decode(&mut buf, &LIMITS).expect("valid") {
                got.push(args);
            }
            buf.extend_from_slice(&input[split..]);
            while let Some(args) = decoder.decode(&mut buf, &LIMITS).expect("valid") {
                got.push(args);
            }
            let got: Vec<Vec<String>> = got
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                })
                .collect();
            assert_eq!(got, whole, "split at {split}");
            assert!(buf.is_empty());
        }
    }

    /// Before AUTH, large declared counts and lengths are refused outright.
    #[test]
    fn unauthenticated_limits() {
        let limits = DecodeLimits {
            authenticated: false,
            ..LIMITS
        };
        assert_eq!(
            decode_all(b"*11\r\n", &limits),
            Err(ProtocolError::UnauthenticatedMultibulkLength)
        );
        assert_eq!(
            decode_all(b"*1\r\n$16385\r\n", &limits),
            Err(ProtocolError::UnauthenticatedBulkLength)
        );
        assert!(decode_all(b"*2\r\n$4\r\nAUTH\r\n$3\r\npw1\r\n", &limits).is_ok());
    }

    /// 1,000 requests in one buffer all come out, in order.
    #[test]
    fn thousand_requests_in_one_write() {
        let mut input = Vec::new();
        for i in 0..1000 {
            let id = i.to_string();
            input.extend(format!("*2\r\n$9\r\nHEARTBEAT\r\n${}\r\n{}\r\n", id.len(), id).bytes());
        }
        let reqs = decode_all(&input, &LIMITS).expect("valid");
        assert_eq!(reqs.len(), 1000);
        assert_eq!(reqs[999], vec!["HEARTBEAT".to_string(), "999".to_string()]);
    }

    #[test]
    fn integers_like_string2ll() {
        assert_eq!(parse_redis_integer(b"0"), Some(0));
        assert_eq!(parse_redis_integer(b"-5"), Some(-5));
        assert_eq!(parse_redis_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_redis_integer(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_redis_integer(b"9223372036854775808"), None);
        for bad in [&b""[..], b"-", b"-0", b"01", b"+1", b" 1", b"1 ", b"1a"] {
            assert_eq!(parse_redis_integer(bad), None, "{bad:?}");
        }
    }
}
