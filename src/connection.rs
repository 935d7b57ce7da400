//! One client connection: socket bytes in, requests decoded, commands run, replies out.
//!
//! Input is bounded by the query-buffer limit; output is flushed every `REPLY_FLUSH_BYTES`, so
//! a client that pipelines without reading stalls only itself (its own task waits on the
//! socket) while every other client keeps being served.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::clients::ClientEntry;
use crate::clock;
use crate::cmd;
use crate::limits::{PUSH_WRITE_BYTES, READ_CHUNK_BYTES, REPLY_FLUSH_BYTES};
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
    let mut coalesced = BytesMut::new();
    let mut args = Vec::new();
    let mut decoder = RequestDecoder::new();
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut out = ReplyBuf::new(Protocol::Resp2);
    let mut shutdown = server.shutdown_requested();
    loop {
        let mut flow = Flow::Continue;
        let mut last_command = None;
        let mut command_count = 0u64;
        let now_ms = clock::now_ms();
        loop {
            // Limits are re-read per request: AUTH earlier in the same batch lifts them.
            let limits = DecodeLimits {
                bulk_len_max: server.config.bulk_len_max,
                args_max: server.config.args_max,
                authenticated: session.authenticated,
            };
            match decoder.decode_into(&mut input, &limits, &mut args) {
                Ok(true) => {
                    let (next, name) = cmd::execute(server, session, &args, &mut out, now_ms);
                    command_count += 1;
                    last_command = name.or(last_command);
                    if next != Flow::Continue {
                        flow = next;
                        break;
                    }
                    if out.len() >= REPLY_FLUSH_BYTES {
                        flush(server, &mut socket, &mut out, entry).await?;
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
        flush(server, &mut socket, &mut out, entry).await?;
        write_pushed(
            server,
            &mut socket,
            entry,
            session,
            &mut pushed,
            &mut coalesced,
        )
        .await?;
        match flow {
            Flow::Continue => {}
            Flow::Close => return socket.shutdown().await,
            Flow::Shutdown => {
                server.request_shutdown();
                return socket.shutdown().await;
            }
        }
        if input.len() > server.config.query_buffer_max {
            warn!(client = entry.id, addr = %entry.addr, bytes = input.len(),
                  "closing client that reached the query buffer limit");
            // As Redis does, the client is closed without a reply: it is mid-request, so a
            // reply would be read as the answer to a request it has not finished sending.
            return socket.shutdown().await;
        }
        input.reserve(READ_CHUNK_BYTES);
        tokio::select! {
            read = socket.read_buf(&mut input) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                Stats::add(&server.stats.net_input_bytes, n as u64);
            }
            _ = entry.outbox.ready.notified() => {}
            _ = entry.kill.notified() => {
                debug!(client = entry.id, "killed by CLIENT KILL or the pub/sub output limit");
                return Ok(());
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// Writes pending replies. A write that blocks is abandoned if the client is killed meanwhile
/// (a subscriber over its output limit stops being written to at once).
async fn flush(
    server: &Server,
    socket: &mut TcpStream,
    out: &mut ReplyBuf,
    entry: &ClientEntry,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    write_or_killed(socket, &out.buf, entry).await?;
    Stats::add(&server.stats.net_output_bytes, out.len() as u64);
    out.buf.clear();
    Ok(())
}

/// Writes the messages published to this client since the last call, coalesced into writes
/// of up to `PUSH_WRITE_BYTES` (one syscall per message would cost more than the messages).
async fn write_pushed(
    server: &Server,
    socket: &mut TcpStream,
    entry: &ClientEntry,
    session: &Session,
    pushed: &mut Vec<Pushed>,
    coalesced: &mut BytesMut,
) -> std::io::Result<()> {
    if entry.outbox.overflowed() {
        return Err(std::io::Error::other("pub/sub output limit reached"));
    }
    let bytes = entry.outbox.drain_into(pushed);
    for (message, (kind, name)) in pushed.drain(..) {
        // Queued before an UNSUBSCRIBE this connection has since answered: Redis would not
        // send it, and a RESP2 client would take it for a command reply.
        let still_subscribed = match kind {
            Kind::Channel => session.channels.contains(&name),
            Kind::Pattern => session.patterns.contains(&name),
        };
        if !still_subscribed {
            continue;
        }
        coalesced.extend_from_slice(&message);
        if coalesced.len() >= PUSH_WRITE_BYTES {
            write_or_killed(socket, coalesced, entry).await?;
            coalesced.clear();
        }
    }
    if !coalesced.is_empty() {
        write_or_killed(socket, coalesced, entry).await?;
        coalesced.clear();
    }
    Stats::add(&server.stats.net_output_bytes, bytes as u64);
    Ok(())
}

async fn write_or_killed(
    socket: &mut TcpStream,
    data: &[u8],
    entry: &ClientEntry,
) -> std::io::Result<()> {
    tokio::select! {
        written = socket.write_all(data) => written,
        _ = entry.kill.notified() => Err(std::io::Error::other("connection killed")),
    }
}
