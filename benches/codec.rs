//! RESP codec micro-benchmarks: the request decoder on pipelined input, and the reply encoder
//! on an MSTATUS-shaped reply. Reference figures and the command that produced them are in
//! `benches/README.md`.

use std::fmt::Write as _;
use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use presenced::limits::{ARGS_MAX_DEFAULT, BULK_LEN_MAX_DEFAULT};
use presenced::resp::{DecodeLimits, Protocol, ReplyBuf, RequestDecoder};
use presenced::store::{State, View};

/// Requests in one pipelined buffer.
const PIPELINE: usize = 1_000;
/// IDs in one MSTATUS request and in one MSTATUS reply.
const MSTATUS_IDS: usize = 100;
/// A fixed "now" (2025-11-24), so nothing reads the clock.
const NOW_MS: u64 = 1_764_000_000_000;

const LIMITS: DecodeLimits = DecodeLimits {
    bulk_len_max: BULK_LEN_MAX_DEFAULT,
    args_max: ARGS_MAX_DEFAULT,
    authenticated: true,
};

/// Seven- and eight-digit user IDs, as a deployment with millions of users sends them.
fn user_id(i: usize) -> String {
    (1_000_000 + i * 9_973).to_string()
}

fn multibulk(args: &[&str], out: &mut String) {
    write!(out, "*{}\r\n", args.len()).expect("writing to a String");
    for arg in args {
        write!(out, "${}\r\n{arg}\r\n", arg.len()).expect("writing to a String");
    }
}

fn multibulk_heartbeats(n: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        multibulk(&["HEARTBEAT", &user_id(i)], &mut out);
    }
    out.into_bytes()
}

fn inline_heartbeats(n: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        write!(out, "HEARTBEAT {}\r\n", user_id(i)).expect("writing to a String");
    }
    out.into_bytes()
}

fn mstatus_request(n: usize) -> Vec<u8> {
    let ids: Vec<String> = (0..n).map(user_id).collect();
    let mut args = vec!["MSTATUS"];
    args.extend(ids.iter().map(String::as_str));
    let mut out = String::new();
    multibulk(&args, &mut out);
    out.into_bytes()
}

/// Decodes every request in `input` (a fresh copy per iteration, made outside the timing),
/// reusing one decoder and one argument vector as a connection does.
fn bench_decode(c: &mut Criterion, name: &str, input: &[u8], requests: usize, args_each: usize) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(requests as u64));
    let mut decoder = RequestDecoder::new();
    let mut args: Vec<Bytes> = Vec::new();
    group.bench_function(name, |b| {
        b.iter_batched(
            || BytesMut::from(input),
            |mut buf| {
                let mut decoded = 0;
                while decoder
                    .decode_into(&mut buf, &LIMITS, &mut args)
                    .expect("valid input")
                {
                    assert_eq!(args.len(), args_each);
                    black_box(&args);
                    decoded += 1;
                }
                assert_eq!(decoded, requests);
                buf
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

// Measures decode_into on 1,000 pipelined `HEARTBEAT <id>` multibulk requests (time per buffer, requests/s).
fn decode_multibulk_pipeline(c: &mut Criterion) {
    let input = multibulk_heartbeats(PIPELINE);
    bench_decode(c, "heartbeat_multibulk_x1000", &input, PIPELINE, 2);
}

// Measures decode_into on 1,000 pipelined inline `HEARTBEAT <id>` lines (time per buffer, requests/s).
fn decode_inline_pipeline(c: &mut Criterion) {
    let input = inline_heartbeats(PIPELINE);
    bench_decode(c, "heartbeat_inline_x1000", &input, PIPELINE, 2);
}

// Measures decode_into on one multibulk `MSTATUS` request carrying 100 user IDs.
fn decode_mstatus(c: &mut Criterion) {
    let input = mstatus_request(MSTATUS_IDS);
    bench_decode(c, "mstatus_100_ids", &input, 1, MSTATUS_IDS + 1);
}

/// What `cmd::presence::write_status` writes for one user (RESP2 `[state, last_seen_ms]`,
/// RESP3 `{state: ..., last_seen_ms: ...}`), copied here because that function is private.
fn write_status(out: &mut ReplyBuf, view: View) {
    let state = view.state.as_str().as_bytes();
    match out.protocol {
        Protocol::Resp2 => {
            out.array(2);
            out.bulk(state);
        }
        Protocol::Resp3 => {
            out.map(2);
            out.bulk(b"state");
            out.bulk(state);
            out.bulk(b"last_seen_ms");
        }
    }
    match view.last_seen_ms {
        Some(ms) => out.integer(ms as i64),
        None => out.null(),
    }
}

/// A mix of answers: mostly online users, some away, offline and never seen.
fn mstatus_views(n: usize) -> Vec<View> {
    (0..n)
        .map(|i| match i % 10 {
            0..=5 => View {
                state: State::Online,
                last_seen_ms: Some(NOW_MS - i as u64 * 137),
            },
            6 => View {
                state: State::Away,
                last_seen_ms: Some(NOW_MS - 5_000),
            },
            7 | 8 => View {
                state: State::Offline,
                last_seen_ms: Some(NOW_MS - 3_600_000 - i as u64),
            },
            _ => View {
                state: State::Offline,
                last_seen_ms: None,
            },
        })
        .collect()
}

// Measures ReplyBuf encoding an MSTATUS reply of 100 entries in RESP2 and RESP3 (buffer reused, cleared per reply).
fn encode_mstatus_reply(c: &mut Criterion) {
    let views = mstatus_views(MSTATUS_IDS);
    let mut group = c.benchmark_group("reply");
    group.throughput(Throughput::Elements(MSTATUS_IDS as u64));
    for (name, protocol) in [
        ("mstatus_100_resp2", Protocol::Resp2),
        ("mstatus_100_resp3", Protocol::Resp3),
    ] {
        let mut out = ReplyBuf::new(protocol);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.buf.clear();
                out.array(views.len());
                for view in black_box(&views) {
                    write_status(&mut out, *view);
                }
                black_box(out.len())
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    decode_multibulk_pipeline,
    decode_inline_pipeline,
    decode_mstatus,
    encode_mstatus_reply
);
criterion_main!(benches);
