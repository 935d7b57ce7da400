//! fanout-storm: how long unrelated clients wait while a pub/sub backlog is delivered.
//!
//! Subscribers (`PSUBSCRIBE presence:*`) take every event while a driver brings users online
//! as fast as the server accepts it (presenced: `MHEARTBEAT` of canonical decimal IDs, each
//! user's transition published on `presence:<id>`; redis: one `PUBLISH presence:<id>` of the
//! same JSON per user, the same volume of pub/sub traffic), and pingers, each on its own
//! connection, time `PING` round trips until every subscriber has every event. See
//! benches/README.md.

#[path = "../hist.rs"]
mod hist;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hist::Hist;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "\
fanout-storm: PING latency of unrelated clients during a pub/sub fan-out storm

USAGE: fanout-storm [OPTIONS]

  --host HOST            server address (127.0.0.1)
  --port PORT            server port (6379)
  --target T             presenced | redis (presenced)
  --subscribers N        PSUBSCRIBE presence:* connections (200)
  --users U              users brought online, IDs first-id .. first-id+U (100000)
  --first-id N           first user ID (1)
  --batch B              users per MHEARTBEAT, PUBLISHes per pipelined write (1000)
  --pingers N            PING connections, one thread each (8)
  --ping-interval-ms MS  pause between one pinger's PINGs (5)
  --reader-threads N     threads reading the subscribers (2)
  --timeout-s S          give up when delivery takes longer (120)
  --json                 print one JSON object
";

#[derive(Clone)]
struct Args {
    host: String,
    port: u16,
    redis: bool,
    subscribers: usize,
    users: u64,
    first_id: u64,
    batch: u64,
    pingers: usize,
    ping_interval_ms: u64,
    reader_threads: usize,
    timeout_s: u64,
    json: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 6379,
        redis: false,
        subscribers: 200,
        users: 100_000,
        first_id: 1,
        batch: 1000,
        pingers: 8,
        ping_interval_ms: 5,
        reader_threads: 2,
        timeout_s: 120,
        json: false,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--host" => a.host = value.clone(),
            "--port" => a.port = number()? as u16,
            "--target" => {
                a.redis = match value.as_str() {
                    "redis" => true,
                    "presenced" => false,
                    other => return Err(format!("--target: presenced or redis, not {other}")),
                }
            }
            "--subscribers" => a.subscribers = number()? as usize,
            "--users" => a.users = number()?,
            "--first-id" => a.first_id = number()?,
            "--batch" => a.batch = number()?.max(1),
            "--pingers" => a.pingers = number()? as usize,
            "--ping-interval-ms" => a.ping_interval_ms = number()?,
            "--reader-threads" => a.reader_threads = (number()? as usize).max(1),
            "--timeout-s" => a.timeout_s = number()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("fanout-storm: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(report) => {
            report.print(&args);
            if report.delivered < report.expected {
                eprintln!(
                    "fanout-storm: {} of {} deliveries arrived",
                    report.delivered, report.expected
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("fanout-storm: {err}");
            ExitCode::FAILURE
        }
    }
}

struct Report {
    expected: u64,
    delivered: u64,
    driven_s: f64,
    delivered_s: f64,
    pings: Hist,
    pinger_max_us: Vec<u64>,
}

impl Report {
    fn print(&self, args: &Args) {
        let ms = |us: u64| us as f64 / 1000.0;
        let target = if args.redis { "redis" } else { "presenced" };
        if args.json {
            let maxes: Vec<String> = self
                .pinger_max_us
                .iter()
                .map(|us| format!("{:.2}", ms(*us)))
                .collect();
            println!(
                "{{\"target\":\"{target}\",\"subscribers\":{},\"users\":{},\"expected\":{},\
                 \"delivered\":{},\"driven_s\":{:.3},\"delivered_s\":{:.3},\"pings\":{},\
                 \"ping_p50_ms\":{:.2},\"ping_p99_ms\":{:.2},\"ping_max_ms\":{:.2},\
                 \"pinger_max_ms\":[{}]}}",
                args.subscribers,
                args.users,
                self.expected,
                self.delivered,
                self.driven_s,
                self.delivered_s,
                self.pings.count(),
                ms(self.pings.quantile(0.50)),
                ms(self.pings.quantile(0.99)),
                ms(self.pings.max()),
                maxes.join(",")
            );
            return;
        }
        println!(
            "{target}: {} subscribers x {} users: {} of {} deliveries; users driven in {:.2} s, \
             all delivered after {:.2} s",
            args.subscribers,
            args.users,
            self.delivered,
            self.expected,
            self.driven_s,
            self.delivered_s
        );
        println!(
            "  PING ({} round trips on {} connections): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.pings.count(),
            args.pingers,
            ms(self.pings.quantile(0.50)),
            ms(self.pings.quantile(0.99)),
            ms(self.pings.max())
        );
    }
}

fn connect(args: &Args) -> Result<TcpStream, String> {
    let stream = TcpStream::connect((args.host.as_str(), args.port))
        .map_err(|e| format!("connect {}:{}: {e}", args.host, args.port))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

fn run(args: &Args) -> Result<Report, String> {
    let subscribers = subscribe_all(args)?;
    let expected = args.users * args.subscribers as u64;
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);

    let readers = spawn_readers(subscribers, args, &delivered, deadline)?;
    let pingers: Vec<_> = (0..args.pingers)
        .map(|_| {
            let stream = connect(args)?;
            let stop = Arc::clone(&stop);
            let interval = Duration::from_millis(args.ping_interval_ms);
            Ok(thread::spawn(move || ping_loop(stream, &stop, interval)))
        })
        .collect::<Result<_, String>>()?;

    let started = Instant::now();
    drive(args)?;
    let driven_s = started.elapsed().as_secs_f64();
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
    let delivered_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);

    let mut pings = Hist::new();
    let mut pinger_max_us = Vec::new();
    for pinger in pingers {
        let hist = pinger
            .join()
            .map_err(|_| "a pinger panicked".to_string())??;
        pinger_max_us.push(hist.max());
        pings.merge(&hist);
    }
    for reader in readers {
        reader
            .join()
            .map_err(|_| "a reader panicked".to_string())??;
    }
    Ok(Report {
        expected,
        delivered: delivered.load(Ordering::Relaxed),
        driven_s,
        delivered_s,
        pings,
        pinger_max_us,
    })
}

/// Opens every subscriber and waits for each one's confirmation, so that no event is
/// published before everyone listens.
fn subscribe_all(args: &Args) -> Result<Vec<TcpStream>, String> {
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let mut stream = connect(args)?;
        stream
            .write_all(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$10\r\npresence:*\r\n")
            .map_err(|e| e.to_string())?;
        subscribers.push(stream);
    }
    for stream in &mut subscribers {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.ends_with(b":1\r\n") {
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("subscribe: {e}"))?;
            if n == 0 {
                return Err("subscribe: connection closed".into());
            }
            seen.extend_from_slice(&buf[..n]);
        }
    }
    Ok(subscribers)
}

type Joined<T> = thread::JoinHandle<Result<T, String>>;

/// Reads the subscribers on a few threads (mio), counting `pmessage` frames.
fn spawn_readers(
    subscribers: Vec<TcpStream>,
    args: &Args,
    delivered: &Arc<AtomicU64>,
    deadline: Instant,
) -> Result<Vec<Joined<()>>, String> {
    let mut groups: Vec<Vec<TcpStream>> = (0..args.reader_threads).map(|_| Vec::new()).collect();
    for (i, stream) in subscribers.into_iter().enumerate() {
        groups[i % args.reader_threads].push(stream);
    }
    let per_subscriber = args.users;
    groups
        .into_iter()
        .filter(|group| !group.is_empty())
        .map(|group| {
            let delivered = Arc::clone(delivered);
            Ok(thread::spawn(move || {
                read_group(group, per_subscriber, &delivered, deadline)
            }))
        })
        .collect()
}

const MARKER: &[u8] = b"pmessage";

fn read_group(
    group: Vec<TcpStream>,
    per_subscriber: u64,
    delivered: &AtomicU64,
    deadline: Instant,
) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut streams = Vec::with_capacity(group.len());
    for (i, stream) in group.into_iter().enumerate() {
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = MioStream::from_std(stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        // (stream, messages counted, bytes kept from the last read: a marker may be split)
        streams.push((stream, 0u64, Vec::<u8>::new()));
    }
    let mut done = 0;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    while done < streams.len() && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        for event in &events {
            let (stream, count, tail) = &mut streams[event.token().0];
            let before = *count;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => return Err("a subscriber was disconnected".into()),
                    Ok(n) => *count += count_markers(tail, &buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("subscriber read: {e}")),
                }
            }
            delivered.fetch_add(*count - before, Ordering::Relaxed);
            if before < per_subscriber && *count >= per_subscriber {
                done += 1;
            }
        }
    }
    Ok(())
}

/// Counts markers in `tail` + `data`, keeping the last bytes that could begin a split one.
fn count_markers(tail: &mut Vec<u8>, data: &[u8]) -> u64 {
    let keep = MARKER.len() - 1;
    let mut count = 0;
    let old_tail = std::mem::take(tail);
    if !old_tail.is_empty() {
        // Only a marker that straddles the two reads is counted here: the tail is too short
        // to hold one, and one inside `data` is counted below.
        let mut joined = old_tail.clone();
        joined.extend_from_slice(&data[..data.len().min(keep)]);
        count += joined
            .windows(MARKER.len())
            .filter(|w| *w == MARKER)
            .count() as u64;
    }
    let mut rest = data;
    while let Some(at) = rest.iter().position(|&b| b == MARKER[0]) {
        if rest[at..].starts_with(MARKER) {
            count += 1;
            rest = &rest[at + MARKER.len()..];
        } else {
            rest = &rest[at + 1..];
        }
    }
    if data.len() < keep {
        tail.extend_from_slice(&old_tail[old_tail.len().saturating_sub(keep - data.len())..]);
    }
    tail.extend_from_slice(&data[data.len().saturating_sub(keep)..]);
    count
}

fn ping_loop(mut stream: TcpStream, stop: &AtomicBool, interval: Duration) -> Result<Hist, String> {
    let mut hist = Hist::new();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        stream
            .write_all(b"*1\r\n$4\r\nPING\r\n")
            .map_err(|e| format!("ping: {e}"))?;
        let mut seen = 0;
        while seen < 7 {
            let n = stream
                .read(&mut buf[seen..])
                .map_err(|e| format!("ping: {e}"))?;
            if n == 0 {
                return Err("ping: connection closed".into());
            }
            seen += n;
        }
        if &buf[..7] != b"+PONG\r\n" {
            return Err(format!(
                "ping: unexpected reply {:?}",
                String::from_utf8_lossy(&buf[..seen])
            ));
        }
        hist.record(sent.elapsed().as_micros() as u64);
        thread::sleep(interval);
    }
    Ok(hist)
}

/// Brings every user online (presenced) or publishes one event per user (redis), pipelined:
/// a writer thread sends while this thread reads the replies.
fn drive(args: &Args) -> Result<(), String> {
    let stream = connect(args)?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = stream;
    let requests = args.users.div_ceil(args.batch);
    let replies_expected = if args.redis { args.users } else { requests };
    let (redis, users, first_id, batch) = (args.redis, args.users, args.first_id, args.batch);
    let sender = thread::spawn(move || -> Result<(), String> {
        // Any 13-digit time: the payload is the same size as presenced's events.
        let now_ms: u64 = 1_795_704_729_295;
        let mut out = Vec::with_capacity(64 * 1024);
        for request in 0..requests {
            let lo = first_id + request * batch;
            let hi = (lo + batch).min(first_id + users);
            out.clear();
            if redis {
                for id in lo..hi {
                    let channel = format!("presence:{id}");
                    let payload = format!(
                        "{{\"user\":\"{id}\",\"state\":\"online\",\"last_seen_ms\":{now_ms}}}"
                    );
                    bulk_array(
                        &mut out,
                        &[b"PUBLISH", channel.as_bytes(), payload.as_bytes()],
                    );
                }
            } else {
                let ids: Vec<String> = (lo..hi).map(|id| id.to_string()).collect();
                let mut parts: Vec<&[u8]> = vec![b"MHEARTBEAT"];
                parts.extend(ids.iter().map(|id| id.as_bytes()));
                bulk_array(&mut out, &parts);
            }
            writer.write_all(&out).map_err(|e| format!("drive: {e}"))?;
        }
        Ok(())
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut replies = 0u64;
    while replies < replies_expected {
        let n = reader.read(&mut buf).map_err(|e| format!("drive: {e}"))?;
        if n == 0 {
            return Err("drive: connection closed".into());
        }
        if buf[..n].contains(&b'-') {
            return Err(format!(
                "drive: error reply {:?}",
                String::from_utf8_lossy(&buf[..n])
            ));
        }
        // Every reply is an integer (`:N\r\n`): count their line ends.
        replies += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    sender
        .join()
        .map_err(|_| "the driver's writer panicked".to_string())?
}

fn bulk_array(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Markers split across reads are counted once, and only once.
    #[test]
    fn counts_markers_across_reads() {
        let stream = b"*4\r\n$8\r\npmessage\r\n$10\r\npresence:*\r\n*4\r\n$8\r\npmessage\r\n";
        for first in 0..stream.len() {
            for second in first..stream.len() {
                let mut tail = Vec::new();
                let count = count_markers(&mut tail, &stream[..first])
                    + count_markers(&mut tail, &stream[first..second])
                    + count_markers(&mut tail, &stream[second..]);
                assert_eq!(count, 2, "split at {first} and {second}");
            }
        }
    }
}
