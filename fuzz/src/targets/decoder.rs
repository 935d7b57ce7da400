//! The RESP request decoder (`presenced::resp::RequestDecoder`) on arbitrary bytes.
//!
//! Invariants, each a panic when broken:
//! - decoding never panics, and ends in requests, a wait for more bytes, or a protocol error;
//! - every decoded request consumed at least one byte and never more than the buffer held, so
//!   a connection can neither loop forever nor lose bytes, and what is left is exactly the
//!   unconsumed end of the input;
//! - the same bytes give the same requests and the same ending whether they arrive in one
//!   read, in a few reads split at points chosen from the input, or one byte at a time;
//! - a multibulk request respects the limits it was decoded under (argument count, bulk
//!   length, the unauthenticated 10 arguments and 16 KiB); an inline request's line is at most
//!   `INLINE_LINE_MAX` and its arguments are exactly what `split_args` makes of it;
//! - memory stays within a small multiple of the input (a declared length is not trusted).
//!
//! Each input is decoded under three sets of limits: the defaults authenticated, the defaults
//! before AUTH, and small limits drawn from the input's hash (so declared counts and lengths
//! cross them often).

use bytes::{Bytes, BytesMut};
use presenced::limits::{
    ARGS_MAX_DEFAULT, BULK_LEN_MAX_DEFAULT, INLINE_LINE_MAX, UNAUTHENTICATED_ARGS_MAX,
    UNAUTHENTICATED_BULK_LEN_MAX,
};
use presenced::resp::{DecodeLimits, ProtocolError, RequestDecoder, parse_integer, split_args};

use crate::rng::{Rng, hash};

/// Inputs up to this size are also fed one byte at a time (cost O(n) per byte for the suffix
/// compare, so small ones only).
const BYTEWISE_MAX: usize = 512;

/// What decoding can allocate beyond the input: a fixed allowance (the decoder reserves at
/// most 1 MiB ahead of a declared body; buffers grow by doubling) plus a per-byte factor for
/// the decoded arguments, their copies kept by this target and inline argument vectors.
fn memory_bound(input_len: usize) -> usize {
    (8 << 20) + 96 * input_len
}

/// How a decoding run ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Waiting for more bytes: `rest` unconsumed bytes, and whether a multibulk is under way.
    NeedMore {
        rest: usize,
        in_request: bool,
    },
    Error(ProtocolError),
}

#[derive(Debug, PartialEq, Eq)]
struct Run {
    requests: Vec<Vec<Bytes>>,
    kinds: Vec<Kind>,
    end: End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Inline,
    Multibulk,
}

/// Feeds `data` in pieces (`cuts` are the split offsets, ascending) and decodes after each.
fn decode_in_pieces(data: &[u8], cuts: &[usize], limits: &DecodeLimits) -> Run {
    let mut decoder = RequestDecoder::new();
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    let mut run = Run {
        requests: Vec::new(),
        kinds: Vec::new(),
        end: End::NeedMore {
            rest: 0,
            in_request: false,
        },
    };
    let mut fed = 0;
    // The offset in `data` of the buffer's first byte: everything before it was consumed.
    let mut consumed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        buf.extend_from_slice(&data[fed..cut]);
        fed = cut;
        loop {
            let before = buf.len();
            match decoder.decode_into(&mut buf, limits, &mut args) {
                Ok(true) => {
                    assert!(buf.len() < before, "a request consumed no byte");
                    let taken = before - buf.len();
                    let segment = &data[consumed..consumed + taken];
                    consumed += taken;
                    let kind = check_request(segment, &args, limits);
                    run.requests.push(args.clone());
                    run.kinds.push(kind);
                }
                Ok(false) => {
                    assert!(buf.len() <= before, "waiting grew the buffer's contents");
                    consumed += before - buf.len();
                    run.end = End::NeedMore {
                        rest: buf.len(),
                        in_request: decoder.in_request(),
                    };
                    break;
                }
                Err(e) => {
                    run.end = End::Error(e);
                    return run;
                }
            }
        }
        assert_eq!(consumed + buf.len(), fed, "bytes lost or invented");
        assert_eq!(
            &buf[..],
            &data[consumed..fed],
            "the buffer is not the unconsumed input"
        );
    }
    run
}

/// Checks one decoded request against the bytes it was decoded from and the limits; returns
/// its kind.
fn check_request(segment: &[u8], args: &[Bytes], limits: &DecodeLimits) -> Kind {
    assert!(!args.is_empty(), "an empty request was returned");
    match classify(segment) {
        Segment::Multibulk(count) => {
            assert_eq!(count, args.len() as i64, "declared count");
            assert!(args.len() <= limits.args_max, "args_max");
            if !limits.authenticated {
                assert!(
                    args.len() <= UNAUTHENTICATED_ARGS_MAX,
                    "unauthenticated count"
                );
            }
            for arg in args {
                assert!(arg.len() <= limits.bulk_len_max, "bulk_len_max");
                if !limits.authenticated {
                    assert!(arg.len() <= UNAUTHENTICATED_BULK_LEN_MAX, "unauth bulk");
                }
            }
            Kind::Multibulk
        }
        Segment::Inline(line) => {
            assert!(
                line.len() <= INLINE_LINE_MAX,
                "inline line of {}",
                line.len()
            );
            let expected = split_args(strip_cr(line)).expect("a decoded inline line splits");
            assert_eq!(
                expected,
                args.iter().map(|a| a.to_vec()).collect::<Vec<_>>(),
                "inline arguments differ from split_args"
            );
            Kind::Inline
        }
    }
}

enum Segment<'a> {
    Multibulk(i64),
    /// The line, without its `\n`.
    Inline(&'a [u8]),
}

/// What request a consumed segment held: skips what the decoder skips silently (blank inline
/// lines, `*0` and negative counts), then reads the request's first line. The segment was
/// accepted by the decoder, so a failure to find its parts is a finding in itself.
fn classify(mut segment: &[u8]) -> Segment<'_> {
    loop {
        if segment.first() == Some(&b'*') {
            let cr = position(segment, b'\r').expect("a multibulk header ends in CR");
            let count = parse_integer(&segment[1..cr]).expect("a valid count");
            if count > 0 {
                return Segment::Multibulk(count);
            }
            segment = &segment[cr + 2..];
            continue;
        }
        let newline = position(segment, b'\n').expect("an inline line ends in LF");
        let line = &segment[..newline];
        let rest = &segment[newline + 1..];
        let args = split_args(strip_cr(line)).expect("a consumed inline line splits");
        if args.is_empty() {
            segment = rest;
            continue;
        }
        assert!(rest.is_empty(), "bytes consumed after an inline request");
        return Segment::Inline(line);
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn position(bytes: &[u8], needle: u8) -> Option<usize> {
    bytes.iter().position(|&b| b == needle)
}

fn limit_sets(data: &[u8]) -> [DecodeLimits; 3] {
    let h = hash(data);
    [
        DecodeLimits {
            bulk_len_max: BULK_LEN_MAX_DEFAULT,
            args_max: ARGS_MAX_DEFAULT,
            authenticated: true,
        },
        DecodeLimits {
            bulk_len_max: BULK_LEN_MAX_DEFAULT,
            args_max: ARGS_MAX_DEFAULT,
            authenticated: false,
        },
        DecodeLimits {
            bulk_len_max: (h % 40) as usize,
            args_max: 1 + ((h >> 8) % 6) as usize,
            authenticated: true,
        },
    ]
}

/// The target: decodes `data` every way described above; returns a coarse label of the
/// outcome (which kinds of request were seen and how each limit set ended).
pub fn check(data: &[u8]) -> String {
    let (label, peak) = crate::alloc::peak_during(|| check_inner(data));
    assert!(
        peak <= memory_bound(data.len()),
        "{peak} bytes allocated for {} bytes of input",
        data.len()
    );
    label
}

fn check_inner(data: &[u8]) -> String {
    let mut label = String::new();
    for (set, limits) in limit_sets(data).iter().enumerate() {
        let whole = decode_in_pieces(data, &[], limits);
        let mut rng = Rng::new(hash(data) ^ set as u64);
        if !data.is_empty() {
            let mut cuts: Vec<usize> = (0..rng.range(1, 7))
                .map(|_| rng.below(data.len() + 1))
                .collect();
            cuts.sort_unstable();
            let pieces = decode_in_pieces(data, &cuts, limits);
            assert_eq!(pieces, whole, "split at {cuts:?} under {limits:?}");
        }
        if data.len() <= BYTEWISE_MAX {
            let cuts: Vec<usize> = (1..data.len()).collect();
            let bytewise = decode_in_pieces(data, &cuts, limits);
            assert_eq!(bytewise, whole, "byte at a time under {limits:?}");
        }
        if set > 0 {
            label.push('|');
        }
        label.push_str(&outcome_label(&whole));
    }
    label
}

fn outcome_label(run: &Run) -> String {
    let inline = run.kinds.contains(&Kind::Inline);
    let multibulk = run.kinds.contains(&Kind::Multibulk);
    let count = match run.requests.len() {
        n @ 0..=2 => n.to_string(),
        _ => "3+".to_string(),
    };
    let end = match &run.end {
        End::NeedMore { rest: 0, .. } => "done".to_string(),
        End::NeedMore {
            in_request: true, ..
        } => "more(mid-request)".to_string(),
        End::NeedMore { .. } => "more".to_string(),
        End::Error(ProtocolError::ExpectedBulk(_)) => "ExpectedBulk".to_string(),
        End::Error(e) => format!("{e:?}"),
    };
    format!(
        "{count}{}{} {end}",
        if inline { "i" } else { "" },
        if multibulk { "m" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_say_what_happened() {
        let label = check(b"*1\r\n$4\r\nPING\r\nPING\r\n");
        assert!(label.starts_with("2im done|2im done|"), "{label}");
        assert!(check(b"*1\r\n$600000000\r\n").starts_with("0 InvalidBulkLength|"));
        assert!(check(b"*11\r\n").contains("|0 UnauthenticatedMultibulkLength|"));
        assert!(check(b"*2\r\n$3\r\nGET").starts_with("0 more(mid-request)|"));
    }

    /// A huge declared bulk length inside the default limit does not reserve its size.
    #[test]
    fn declared_lengths_are_not_trusted_with_memory() {
        let (_, peak) = crate::alloc::peak_during(|| check(b"*1\r\n$536870912\r\nabc"));
        assert!(peak < 16 << 20, "{peak} bytes");
    }
}
