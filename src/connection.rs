//! One client connection: socket bytes in, requests decoded, commands run, replies out, and
//! the one place a connection ends: every end has a `CloseReason`, logged at its level and
//! counted on the way out.
//!
//! Reading and writing interleave without blocking: replies are written as the socket takes
//! them while more requests are read and run, so a client may send a whole pipeline before
//! reading a reply. Input is bounded by the query-buffer limit and pending output by
//! `OUTPUT_PENDING_MAX` (past it the client is not read until it reads), so a client that
//! never reads stalls only itself while every other client keeps being served.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{Level, debug, info, warn};

use crate::clients::{ClientEntry, CloseReason, Kind, Pushed};
use crate::clock;
use crate::cmd::{self, CmdError};
use crate::limits::{OUTPUT_KEEP_CAPACITY, OUTPUT_PENDING_MAX, PUSH_WRITE_BYTES, READ_CHUNK_BYTES};
use crate::resp::{DecodeLimits, Protocol, ReplyBuf, RequestDecoder};
use crate::services::{Gate, Services, Shared};
use crate::session::{Flow, Session};
use crate::stats::Stats;

/// Registers the client and spawns its task, or refuses it when `--maxclients` are connected.
pub fn accept(services: Arc<Services>, mut socket: TcpStream, addr: SocketAddr) {
    Stats::add(&services.stats.connections_received, 1);
    let _ = socket.set_nodelay(true);
    let local_addr = socket.local_addr().unwrap_or(services.identity.listen_addr);
    let now_ms = clock::now_ms();
    match services
        .clients
        .register(addr, local_addr, now_ms, services.config.clients_max)
    {
        None => {
            Stats::add(&services.stats.connections_rejected, 1);
            let mut refusal = ReplyBuf::new(Protocol::Resp2);
            refusal.error(&CmdError::MaxClientsReached.to_string());
            tokio::spawn(async move {
                let _ = socket.write_all(&refusal.buf).await;
            });
        }
        Some(entry) => {
            entry.meta().fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
            tokio::spawn(async move {
                let reason = serve(&services, socket, &entry).await;
                services.clients.unregister(entry.id);
                services.stats.connection_closed(reason);
                log_close(&entry, reason);
                if reason == CloseReason::ShutdownCommand {
                    services.request_shutdown();
                }
            });
        }
    }
}

fn log_close(entry: &ClientEntry, reason: CloseReason) {
    let (client, addr, why) = (entry.id, entry.addr, reason.as_str());
    match reason.level() {
        Level::WARN => warn!(client, %addr, reason = why, "{}", reason.describe()),
        Level::INFO => info!(client, %addr, reason = why, "{}", reason.describe()),
        _ => debug!(client, %addr, reason = why, "{}", reason.describe()),
    }
}

async fn serve(
    services: &Arc<Services>,
    socket: TcpStream,
    entry: &Arc<ClientEntry>,
) -> CloseReason {
    let mut session = Session::new(Arc::clone(entry), services.config.requirepass.is_some());
    let reason = serve_session(services, socket, entry, &mut session).await;
    // Whatever ended the connection, its subscriptions and watches must not outlive it.
    cmd::unsubscribe_all(&services.pubsub, &mut session);
    cmd::abandon_transaction(&services.shared(), &mut session);
    reason
}

/// An I/O failure ends the connection; the error itself is only worth a debug line.
fn io_failed(entry: &ClientEntry, err: &std::io::Error) -> CloseReason {
    debug!(client = entry.id, %err, "connection I/O error");
    CloseReason::IoError
}

// Longer than most: one loop is the whole life of a connection (run, push, write, close,
// wait), and splitting it would scatter the order those steps must keep.
async fn serve_session(
    services: &Arc<Services>,
    mut socket: TcpStream,
    entry: &Arc<ClientEntry>,
    session: &mut Session,
) -> CloseReason {
    let shared = services.shared();
    let mut pushed = Vec::new();
    let mut args = Vec::new();
    let mut decoder = RequestDecoder::new();
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut out = ReplyBuf::new(Protocol::Resp2);
    let mut shutdown = services.shutdown_requested();
    let mut flow = Flow::Continue;
    let mut held = false;
    let mut paused_until_ms: Option<u64> = None;
    let mut acks = services.replication.watch_acks();
    // Bytes read, taken from the outbox and written since this task last gave its thread
    // back: a connection with endless work (a subscriber in a storm, a long pipeline) yields
    // every YIELD_AFTER_BYTES, so the other connections of its core thread keep their turn.
    let mut worked_bytes = 0usize;
    loop {
        if worked_bytes >= YIELD_AFTER_BYTES {
            worked_bytes = 0;
            tokio::task::yield_now().await;
        }
        // Run what is buffered, unless the replies already waiting are too many: then the
        // client must read before it may send more (it stalls only itself).
        if flow == Flow::Continue && out.len() < OUTPUT_PENDING_MAX {
            let mut batch = Batch {
                shared: &shared,
                gate: &services.gate,
                held: &mut held,
                entry,
                session,
                decoder: &mut decoder,
                args: &mut args,
            };
            (flow, paused_until_ms) = batch.run(&mut input, &mut out);
        }
        // Published messages join the output between replies, while the output is short;
        // otherwise they wait in the outbox, where the pub/sub limit counts them.
        if out.len() < PUSH_WRITE_BYTES {
            match append_pushed(entry, session, &mut pushed, &mut out) {
                Ok(appended) => worked_bytes += appended,
                Err(reason) => return reason,
            }
        }
        match write_ready(&shared, &socket, &mut out) {
            Ok(written) => worked_bytes += written,
            Err(err) => return io_failed(entry, &err),
        }
        if out.len() < PUSH_WRITE_BYTES && entry.outbox.pending_bytes() > 0 {
            // Messages arrived while the output was long: they are not announced again (the
            // outbox wakes us only when it goes from empty to non-empty), so take them now.
            continue;
        }
        if let Flow::WaitReplicas {
            offset,
            count,
            until_ms,
        } = flow
        {
            let acked = services.replication.acked_count(offset);
            if acked >= count || until_ms.is_some_and(|until| clock::now_ms() >= until) {
                out.integer(acked as i64);
                flow = Flow::Continue;
                continue;
            }
        }
        if flow == Flow::Replicate && out.is_empty() {
            // PSYNC: from here on this connection is a follower's replication link.
            let (replid, offset) = session.replica.psync.take().unwrap_or_default();
            let request = crate::replication::leader::SyncRequest {
                replid,
                offset,
                listening_port: session.replica.listening_port,
                announced_ip: session.replica.announced_ip.take(),
            };
            return crate::replication::leader::feed(services, socket, entry, request).await;
        }
        if let Flow::Close(reason) = flow
            && out.is_empty()
        {
            let _ = socket.shutdown().await;
            return reason;
        }
        if input.len() > services.config.query_buffer_max {
            // As Redis does, the client is closed without a reply: it is mid-request, so a
            // reply would be read as the answer to a request it has not finished sending.
            let _ = socket.shutdown().await;
            return CloseReason::QueryBufferLimit;
        }
        // Reading goes on while replies wait to be written (as Redis keeps reading a client
        // whose replies queue up): a client that sends a whole pipeline before reading any
        // reply must not deadlock against us. Only past OUTPUT_PENDING_MAX does reading pause.
        // A held client is not read either: its held request runs first, in order.
        let want_read = flow == Flow::Continue && out.len() < OUTPUT_PENDING_MAX && !held;
        let want_write = !out.is_empty();
        // While held, look again at least every PAUSE_RECHECK_MS: CLIENT UNPAUSE (or the
        // fan-out catching up) may end the wait early.
        let pause_wait = paused_until_ms.map(|until_ms| {
            let left_ms = until_ms.saturating_sub(clock::now_ms());
            std::time::Duration::from_millis(left_ms.min(PAUSE_RECHECK_MS))
        });
        // In WAIT: woken by every acknowledgement, and at the timeout.
        let (waiting_acks, wait_timeout) = match flow {
            Flow::WaitReplicas { until_ms, .. } => (
                true,
                until_ms.map(|until| {
                    std::time::Duration::from_millis(until.saturating_sub(clock::now_ms()))
                }),
            ),
            _ => (false, None),
        };
        tokio::select! {
            ready = socket.readable(), if want_read => {
                if let Err(err) = ready {
                    return io_failed(entry, &err);
                }
                input.reserve(READ_CHUNK_BYTES);
                match socket.try_read_buf(&mut input) {
                    Ok(0) => return CloseReason::ClientClosed,
                    Ok(n) => {
                        worked_bytes += n;
                        Stats::add(&services.stats.net_input_bytes, n as u64);
                        if input.len() > services.config.query_buffer_max {
                            // Judged as soon as the bytes are in, before any of them is parsed,
                            // as Redis does: one read can bring more than a chunk, and a
                            // request completed past the limit must not run (or be judged a
                            // protocol error) first.
                            let _ = socket.shutdown().await;
                            return CloseReason::QueryBufferLimit;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return io_failed(entry, &e),
                }
            }
            ready = socket.writable(), if want_write => {
                if let Err(err) = ready {
                    return io_failed(entry, &err);
                }
            }
            _ = tokio::time::sleep(pause_wait.unwrap_or_default()), if pause_wait.is_some() => {}
            _ = acks.changed(), if waiting_acks => {}
            _ = tokio::time::sleep(wait_timeout.unwrap_or_default()), if wait_timeout.is_some() => {}
            _ = entry.outbox.ready.notified() => {}
            _ = entry.kill.notified() => return entry.kill_reason(),
            _ = shutdown.changed() => return CloseReason::ServerShutdown,
        }
    }
}

/// Work a connection does before it yields its thread to the others (see `worked_bytes`):
/// 64 KiB is one socket read, ~10-20 µs of copying and system calls, so a hundred busy
/// connections on one thread delay a PING there by a few milliseconds. Measured with 200
/// subscribers in a storm on one core: 256 KiB gave PING p99 33-43 ms, 64 KiB 25-29 ms, at the
/// same delivery rate (docs/BENCHMARKS.md).
const YIELD_AFTER_BYTES: usize = 64 * 1024;

/// How often a client held by `CLIENT PAUSE` looks whether the pause ended early (UNPAUSE):
/// 10 ms adds at most that to an unpause, and costs a paused client 100 wake-ups a second.
const PAUSE_RECHECK_MS: u64 = 10;

/// What running one batch of buffered requests works with.
struct Batch<'a, 'b> {
    shared: &'a Shared<'a>,
    gate: &'a Gate,
    /// A decoded request in `args` that must wait (`cmd::held_until`).
    held: &'b mut bool,
    entry: &'a ClientEntry,
    session: &'b mut Session,
    decoder: &'b mut RequestDecoder,
    args: &'b mut Vec<bytes::Bytes>,
}

impl Batch<'_, '_> {
    /// Decodes and runs buffered requests until none is complete, the output is long enough
    /// to write first, one asks to close, or one must wait (`cmd::held_until`: a `CLIENT PAUSE`,
    /// a PUBLISH while the fan-out is backlogged); that one stays decoded in `args`, `held`,
    /// and runs first next time. Returns what the connection should do next, and until when it
    /// is held.
    fn run(&mut self, input: &mut BytesMut, out: &mut ReplyBuf) -> (Flow, Option<u64>) {
        let config = self.shared.config;
        let stats = self.shared.stats;
        let mut flow = Flow::Continue;
        let mut paused_until_ms = None;
        let mut last_command = None;
        let mut command_count = 0u64;
        let now_ms = clock::now_ms();
        let mut gate = Some(self.gate.shared());
        // Started once the gate is held: waiting for another client's EXEC is no command's time.
        let mut meter = cmd::Meter::start(stats);
        while out.len() < OUTPUT_PENDING_MAX {
            // Limits are re-read per request: AUTH earlier in the same batch lifts them.
            let limits = DecodeLimits {
                bulk_len_max: config.bulk_len_max,
                args_max: config.args_max,
                authenticated: self.session.authenticated,
            };
            if !*self.held {
                match self.decoder.decode_into(input, &limits, self.args) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(err) => {
                        Stats::add(&stats.protocol_errors, 1);
                        debug!(client = self.entry.id, addr = %self.entry.addr,
                               "protocol error: {}", err.message());
                        out.error(&err.message());
                        flow = Flow::Close(CloseReason::ProtocolError);
                        break;
                    }
                }
            }
            *self.held = false;
            if let Some(until_ms) = cmd::held_until(self.shared, self.session, self.args, now_ms) {
                *self.held = true;
                paused_until_ms = Some(until_ms);
                break;
            }
            let (next, name) = if cmd::needs_exclusive(self.session, self.args) {
                // An EXEC: every other client is held off while it runs.
                drop(gate.take());
                let exclusive = self.gate.exclusive();
                // Waiting for the other clients' batches is not the EXEC's own time.
                meter.restart();
                let ran = cmd::execute(
                    self.shared,
                    self.session,
                    &mut meter,
                    self.args,
                    out,
                    now_ms,
                );
                drop(exclusive);
                gate = Some(self.gate.shared());
                meter.restart();
                ran
            } else {
                cmd::execute(
                    self.shared,
                    self.session,
                    &mut meter,
                    self.args,
                    out,
                    now_ms,
                )
            };
            command_count += 1;
            last_command = name.or(last_command);
            if next != Flow::Continue {
                flow = next;
                break;
            }
        }
        Stats::add(&stats.commands_processed, command_count);
        if command_count > 0 {
            self.shared.replication.nudge();
        }
        if command_count > 0 {
            let mut meta = self.entry.meta();
            meta.last_interaction_ms = now_ms;
            meta.query_buffer_bytes = input.len();
            meta.query_buffer_free_bytes = input.capacity() - input.len();
            meta.output_pending_bytes = out.len();
            meta.buffers_bytes = input.capacity() + out.buf.capacity();
            if let Some(name) = last_command
                && meta.last_command != name
            {
                meta.last_command = name.to_string();
            }
        }
        (flow, paused_until_ms)
    }
}

/// Writes as much pending output as the socket takes now, without waiting; returns how much.
fn write_ready(
    shared: &Shared<'_>,
    socket: &TcpStream,
    out: &mut ReplyBuf,
) -> std::io::Result<usize> {
    let mut written = 0;
    while !out.is_empty() {
        match socket.try_write(&out.buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                Stats::add(&shared.stats.net_output_bytes, n as u64);
                let _ = out.buf.split_to(n);
                written += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() && out.buf.capacity() > OUTPUT_KEEP_CAPACITY {
        // A burst's buffer would otherwise stay with the connection for its life.
        out.buf = BytesMut::with_capacity(16 * 1024);
    }
    Ok(written)
}

/// Moves the messages published to this client into its output, dropping those of channels
/// it unsubscribed from after they were queued (Redis never sends a message after the
/// unsubscribe confirmation, and a RESP2 client would take it for a command reply). Returns
/// the bytes taken from the outbox.
fn append_pushed(
    entry: &ClientEntry,
    session: &Session,
    pushed: &mut Vec<Pushed>,
    out: &mut ReplyBuf,
) -> Result<usize, CloseReason> {
    if entry.outbox.overflowed() {
        return Err(CloseReason::PubsubOutputLimit);
    }
    let taken = entry.outbox.drain_into(pushed, YIELD_AFTER_BYTES);
    for (message, (kind, name)) in pushed.drain(..) {
        let still_subscribed = match kind {
            Kind::Channel => session.channels.contains(&name),
            Kind::Pattern => session.patterns.contains(&name),
            Kind::Shard => session.shard_channels.contains(&name),
        };
        if still_subscribed {
            out.buf.extend_from_slice(&message);
        }
    }
    Ok(taken)
}
