//! One thread's event loop: many non-blocking connections on one mio `Poll` (epoll,
//! edge-triggered). Each connection keeps up to `pipeline` operations in flight; a freed slot is
//! refilled as soon as the reply that freed it is counted. Requests are copied from the
//! pre-encoded pool; replies are only skimmed.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::hist::Hist;
use crate::skim::Skimmer;
use crate::workload::{Params, Pool};

/// Where a thread's operations come from.
pub enum Work {
    /// Cycle through a shared random pool from `start`, `ops` times (unbounded with a deadline).
    Random {
        pool: Arc<Pool>,
        start: usize,
        ops: Option<u64>,
    },
    /// The populate stream of ids `lo..hi`, encoded in segments of about `segment_bytes`.
    Populate {
        params: Params,
        lo: u64,
        hi: u64,
        segment_bytes: usize,
    },
}

pub struct Config {
    pub pipeline: usize,
    /// Stop starting operations this long after the start.
    pub duration: Option<Duration>,
    /// Give up when no reply arrives for this long while operations are in flight.
    pub stall: Duration,
}

#[derive(Default)]
pub struct Outcome {
    /// Operations completed (all their replies counted).
    pub ops: u64,
    /// Top-level replies counted (= commands answered).
    pub commands: u64,
    pub users: u64,
    /// Replies that were errors.
    pub errors: u64,
    pub pushes: u64,
    /// Time from the start to the last reply, less the time spent encoding populate segments.
    pub elapsed: Duration,
    pub hist: Hist,
    pub first_error: Vec<u8>,
    /// Why the thread stopped early, if it did.
    pub failure: Option<String>,
}

struct Inflight {
    /// Nanoseconds since the thread's start when the op's last byte was written (0 before).
    sent: u64,
    /// Stream position (bytes claimed on this connection) of the op's end.
    end: u64,
    remaining: u32,
    replies: u32,
    users: u32,
}

struct Conn {
    stream: TcpStream,
    skim: Skimmer,
    wbuf: Vec<u8>,
    wpos: usize,
    claimed: u64,
    written: u64,
    inflight: VecDeque<Inflight>,
    /// How many ops at the back of `inflight` are not completely written yet.
    unstamped: usize,
}

struct Source {
    pool: Arc<Pool>,
    cursor: usize,
    cycle: bool,
    left: u64,
    open: bool,
}

impl Source {
    #[inline]
    fn claim(&mut self) -> Option<usize> {
        if !self.open || self.left == 0 || self.cursor >= self.pool.len() {
            return None;
        }
        let i = self.cursor;
        self.cursor += 1;
        if self.cycle && self.cursor == self.pool.len() {
            self.cursor = 0;
        }
        self.left -= 1;
        Some(i)
    }
}

struct Loop<'a> {
    cfg: &'a Config,
    base: Instant,
    src: Source,
    pending: usize,
    out: Outcome,
    last_progress: u64,
}

impl Loop<'_> {
    #[inline]
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn fill_and_write(&mut self, c: &mut Conn) -> Result<(), String> {
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
        }
        while c.inflight.len() < self.cfg.pipeline {
            let Some(i) = self.src.claim() else { break };
            let (bytes, meta) = self.src.pool.op(i);
            c.wbuf.extend_from_slice(bytes);
            c.claimed += bytes.len() as u64;
            c.inflight.push_back(Inflight {
                sent: 0,
                end: c.claimed,
                remaining: meta.replies,
                replies: meta.replies,
                users: meta.users,
            });
            c.unstamped += 1;
            self.pending += 1;
        }
        while c.wpos < c.wbuf.len() {
            match (&c.stream).write(&c.wbuf[c.wpos..]) {
                Ok(n) => {
                    c.wpos += n;
                    c.written += n as u64;
                    let now = self.now();
                    let len = c.inflight.len();
                    while c.unstamped > 0 {
                        let op = &mut c.inflight[len - c.unstamped];
                        if op.end > c.written {
                            break;
                        }
                        op.sent = now;
                        c.unstamped -= 1;
                    }
                    if c.wpos < c.wbuf.len() {
                        // Short write: the socket buffer is full; wait for the writable edge.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    fn read_all(&mut self, c: &mut Conn, rbuf: &mut [u8]) -> Result<(), String> {
        loop {
            match (&c.stream).read(rbuf) {
                Ok(0) => {
                    return Err(format!(
                        "the server closed the connection with {} operations in flight",
                        c.inflight.len()
                    ));
                }
                Ok(n) => {
                    let now = self.now();
                    let counts = c.skim.feed(&rbuf[..n]).map_err(|e| e.to_string())?;
                    self.out.errors += counts.errors;
                    let mut k = counts.replies;
                    if k > 0 {
                        self.last_progress = now;
                    }
                    while k > 0 {
                        let Some(op) = c.inflight.front_mut() else {
                            return Err("a reply arrived with no request in flight".into());
                        };
                        let take = k.min(u64::from(op.remaining));
                        op.remaining -= take as u32;
                        k -= take;
                        if op.remaining == 0 {
                            // Complete ops were fully written, so `sent` is stamped.
                            self.out.hist.record(now.saturating_sub(op.sent));
                            self.out.ops += 1;
                            self.out.commands += u64::from(op.replies);
                            self.out.users += u64::from(op.users);
                            c.inflight.pop_front();
                            self.pending -= 1;
                        }
                    }
                    // A short read drained the socket: the next data brings a new edge.
                    if n < rbuf.len() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// Runs one thread's share. `ready` is passed by every thread and the main thread just
/// before the clock starts.
pub fn run(
    streams: Vec<std::net::TcpStream>,
    work: Work,
    cfg: &Config,
    ready: &Barrier,
) -> Outcome {
    let mut failure = None;
    let mut poll = match Poll::new() {
        Ok(p) => Some(p),
        Err(e) => {
            failure = Some(format!("epoll: {e}"));
            None
        }
    };
    let mut conns: Vec<Conn> = Vec::with_capacity(streams.len());
    for (i, s) in streams.into_iter().enumerate() {
        let mut stream = TcpStream::from_std(s);
        if let Some(p) = &poll
            && let Err(e) = p.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
        {
            failure = Some(format!("register: {e}"));
        }
        conns.push(Conn {
            stream,
            skim: Skimmer::new(),
            wbuf: Vec::with_capacity(64 * 1024),
            wpos: 0,
            claimed: 0,
            written: 0,
            inflight: VecDeque::with_capacity(cfg.pipeline),
            unstamped: 0,
        });
    }

    // Populate: the first segment is encoded before the clock starts.
    let (mut populate, src) = match work {
        Work::Random { pool, start, ops } => {
            let start = if pool.is_empty() {
                0
            } else {
                start % pool.len()
            };
            let src = Source {
                pool,
                cursor: start,
                cycle: true,
                left: ops.unwrap_or(u64::MAX),
                open: true,
            };
            (None, src)
        }
        Work::Populate {
            params,
            lo,
            hi,
            segment_bytes,
        } => {
            let mut next = lo;
            let pool = Arc::new(params.populate_segment(&mut next, hi, segment_bytes));
            let src = Source {
                pool,
                cursor: 0,
                cycle: false,
                left: u64::MAX,
                open: true,
            };
            (Some((params, next, hi, segment_bytes)), src)
        }
    };

    ready.wait();
    let base = Instant::now();
    let mut lp = Loop {
        cfg,
        base,
        src,
        pending: 0,
        out: Outcome::default(),
        last_progress: 0,
    };
    let Some(poll) = poll.as_mut() else {
        lp.out.failure = failure;
        return lp.out;
    };
    if failure.is_some() {
        lp.out.failure = failure;
        return lp.out;
    }

    let mut rbuf = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(1024);
    let mut paused = Duration::ZERO;
    let deadline = cfg.duration.map(|d| d.as_nanos() as u64);
    let mut kick = true;

    let result: Result<(), String> = 'run: loop {
        if kick {
            kick = false;
            for c in conns.iter_mut() {
                if let Err(e) = lp.fill_and_write(c) {
                    break 'run Err(e);
                }
            }
        }
        let now = lp.now();
        if let Some(d) = deadline
            && now >= d
        {
            lp.src.open = false;
        }
        if lp.pending == 0 {
            // Everything sent is answered: next populate segment, or done.
            if let Some((params, next, hi, seg)) = populate.as_mut()
                && *next < *hi
                && lp.src.open
            {
                let t = Instant::now();
                lp.src.pool = Arc::new(params.populate_segment(next, *hi, *seg));
                lp.src.cursor = 0;
                paused += t.elapsed();
                lp.last_progress = lp.now();
                kick = true;
                continue;
            }
            break Ok(());
        }
        let timeout = match deadline {
            Some(d) if lp.src.open => Duration::from_nanos(d.saturating_sub(now)),
            _ => Duration::from_millis(100),
        }
        .min(Duration::from_millis(100));
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break Err(format!("epoll_wait: {e}"));
        }
        if events.is_empty() {
            let idle = lp.now().saturating_sub(lp.last_progress);
            if idle > cfg.stall.as_nanos() as u64 {
                break Err(format!(
                    "no reply for {:.1} s with {} operations in flight",
                    idle as f64 / 1e9,
                    lp.pending
                ));
            }
            continue;
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                && let Err(e) = lp.read_all(c, &mut rbuf)
            {
                break 'run Err(e);
            }
            if let Err(e) = lp.fill_and_write(c) {
                break 'run Err(e);
            }
        }
    };

    let mut out = lp.out;
    out.elapsed = base.elapsed().saturating_sub(paused);
    for c in &conns {
        out.pushes += c.skim.pushes;
        if out.first_error.is_empty() && !c.skim.first_error.is_empty() {
            out.first_error = c.skim.first_error.clone();
        }
    }
    out.failure = result.err();
    if out.failure.is_none() && !conns.iter().all(|c| c.skim.at_boundary()) {
        out.failure = Some("a reply was left incomplete".into());
    }
    debug_assert_eq!(out.hist.count(), out.ops);
    out
}
