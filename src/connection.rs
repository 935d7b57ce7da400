//! One client connection: socket bytes in, requests decoded, commands run, replies out.
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
use tracing::{debug, warn};

use crate::clients::ClientEntry;
use crate::clock;
use crate::cmd;
use crate::limits::{OUTPUT_KEEP_CAPACITY, OUTPUT_PENDING_MAX, PUSH_WRITE_BYTES, READ_CHUNK_BYTES};
use crate::pubsub::{Kind, Pushed};
use crate::resp::{DecodeLimits, Protocol, ReplyBuf, RequestDecoder};
use crate::server::Server;
use crate::session::{Flow, Session};
use crate::stats::Stats;

/// Registers the client and spawns its task, or refuses it when `--maxclients` are connected.
pub fn accept(server: Arc<Server>, mut socket: TcpStream, addr: SocketAddr) {
    Stats::add(&server.stats.connections_received, 1);
    let _ = socket.set_nodelay(true);
    let local_addr = socket.local_addr().unwrap_or(server.listen_addr);
    let now_ms = clock::now_ms();
    match server
        .clients
        .register(addr, local_addr, now_ms, server.config.clients_max)
    {
        None => {
            Stats::add(&server.stats.connections_rejected, 1);
            tokio::spawn(async move {
                let _ = socket
                    .write_all(b"-ERR max number of clients reached\r\n")
                    .await;
            });
        }
        Some(entry) => {
            tokio::spawn(async move {
                let id = entry.id;
                let result = serve(&server, socket, entry).await;
                server.clients.unregister(id);
                if let Err(err) = result {
                    debug!(client = id, %err, "connection ended with an I/O error");
                }
            });
        }
    }
}

async fn serve(server: &Server, socket: TcpStream, entry: Arc<ClientEntry>) -> std::io::Result<()> {
    let mut session = Session::new(Arc::clone(&entry), server.config.requirepass.is_some());
    let result = serve_session(server, socket, &entry, &mut session).await;
    // Whatever ended the connection, its subscriptions must not outlive it.
    cmd::unsubscribe_all(server, &mut session);
    result
}

async fn serve_session(
    server: &Server,
    mut socket: TcpStream,
    entry: &Arc<ClientEntry>,
    session: &mut Session,
) -> std::io::Result<()> {
    let mut pushed = Vec::new();
    let mut args = Vec::new();
    let mut decoder = RequestDecoder::new();
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut out = ReplyBuf::new(Protocol::Resp2);
    let mut shutdown = server.shutdown_requested();
    let mut flow = Flow::Continue;
    loop {
        // Run what is buffered, unless the replies already waiting are too many: then the
        // client must read before it may send more (it stalls only itself).
        if flow == Flow::Continue && out.len() < OUTPUT_PENDING_MAX {
            flow = run_requests(
                server,
                entry,
                session,
                &mut decoder,
                &mut input,
                &mut args,
                &mut out,
            );
        }
        // Published messages join the output between replies, while the output is short;
        // otherwise they wait in the outbox, where the pub/sub limit counts them.
        if out.len() < PUSH_WRITE_BYTES {
            append_pushed(entry, session, &mut pushed, &mut out)?;
        }
        write_ready(server, &socket, &mut out)?;
        if out.len() < PUSH_WRITE_BYTES && entry.outbox.pending_bytes() > 0 {
            // Messages arrived while the output was long: they are not announced again (the
            // outbox wakes us only when it goes from empty to non-empty), so take them now.
            continue;
        }
        if flow != Flow::Continue && out.is_empty() {
            if flow == Flow::Shutdown {
                server.request_shutdown();
            }
            return socket.shutdown().await;
        }
        if input.len() > server.config.query_buffer_max {
            warn!(client = entry.id, addr = %entry.addr, bytes = input.len(),
                  "closing client that reached the query buffer limit");
            // As Redis does, the client is closed without a reply: it is mid-request, so a
            // reply would be read as the answer to a request it has not finished sending.
            return socket.shutdown().await;
        }
        // Reading goes on while replies wait to be written (as Redis keeps reading a client
        // whose replies queue up): a client that sends a whole pipeline before reading any
        // reply must not deadlock against us. Only past OUTPUT_PENDING_MAX does reading pause.
        let want_read = flow == Flow::Continue && out.len() < OUTPUT_PENDING_MAX;
        let want_write = !out.is_empty();
        tokio::select! {
            ready = socket.readable(), if want_read => {
                ready?;
                input.reserve(READ_CHUNK_BYTES);
                match socket.try_read_buf(&mut input) {
                    Ok(0) => return Ok(()),
                    Ok(n) => Stats::add(&server.stats.net_input_bytes, n as u64),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            ready = socket.writable(), if want_write => ready?,
            _ = entry.outbox.ready.notified() => {}
            _ = entry.kill.notified() => {
                debug!(client = entry.id, "killed by CLIENT KILL or the pub/sub output limit");
                return Ok(());
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Decodes and runs buffered requests until none is complete, the output is long enough to
/// write first, or one asks to close. Returns what the connection should do next.
fn run_requests(
    server: &Server,
    entry: &ClientEntry,
    session: &mut Session,
    decoder: &mut RequestDecoder,
    input: &mut BytesMut,
    args: &mut Vec<bytes::Bytes>,
    out: &mut ReplyBuf,
) -> Flow {
    let mut flow = Flow::Continue;
    let mut last_command = None;
    let mut command_count = 0u64;
    let now_ms = clock::now_ms();
    while out.len() < OUTPUT_PENDING_MAX {
        // Limits are re-read per request: AUTH earlier in the same batch lifts them.
        let limits = DecodeLimits {
            bulk_len_max: server.config.bulk_len_max,
            args_max: server.config.args_max,
            authenticated: session.authenticated,
        };
        match decoder.decode_into(input, &limits, args) {
            Ok(true) => {
                let (next, name) = cmd::execute(server, session, args, out, now_ms);
                command_count += 1;
                last_command = name.or(last_command);
                if next != Flow::Continue {
                    flow = next;
                    break;
                }
            }
            Ok(false) => break,
            Err(err) => {
                Stats::add(&server.stats.protocol_errors, 1);
                debug!(client = entry.id, addr = %entry.addr, "protocol error: {}", err.message());
                out.error(&err.message());
                flow = Flow::Close;
                break;
            }
        }
    }
    Stats::add(&server.stats.commands_processed, command_count);
    if command_count > 0 {
        let mut meta = entry.meta();
        meta.last_interaction_ms = now_ms;
        meta.query_buffer_bytes = input.len();
        if let Some(name) = last_command
            && meta.last_command != name
        {
            meta.last_command = name.to_string();
        }
    }
    flow
}

/// Writes as much pending output as the socket takes now, without waiting.
fn write_ready(server: &Server, socket: &TcpStream, out: &mut ReplyBuf) -> std::io::Result<()> {
    while !out.is_empty() {
        match socket.try_write(&out.buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                Stats::add(&server.stats.net_output_bytes, n as u64);
                let _ = out.buf.split_to(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() && out.buf.capacity() > OUTPUT_KEEP_CAPACITY {
        // A burst's buffer would otherwise stay with the connection for its life.
        out.buf = BytesMut::with_capacity(16 * 1024);
    }
    Ok(())
}

/// Moves the messages published to this client into its output, dropping those of channels
/// it unsubscribed from after they were queued (Redis never sends a message after the
/// unsubscribe confirmation, and a RESP2 client would take it for a command reply).
fn append_pushed(
    entry: &ClientEntry,
    session: &Session,
    pushed: &mut Vec<Pushed>,
    out: &mut ReplyBuf,
) -> std::io::Result<()> {
    if entry.outbox.overflowed() {
        return Err(std::io::Error::other("pub/sub output limit reached"));
    }
    entry.outbox.drain_into(pushed);
    for (message, (kind, name)) in pushed.drain(..) {
        let still_subscribed = match kind {
            Kind::Channel => session.channels.contains(&name),
            Kind::Pattern => session.patterns.contains(&name),
        };
        if still_subscribed {
            out.buf.extend_from_slice(&message);
        }
    }
    Ok(())
}
