//! The follower's side: connecting to the leader with Redis's handshake, loading the full-sync
//! snapshot, applying the stream, and acknowledging its offset every second. Reconnects every
//! second while the link is down; ends when the role changes (REPLICAOF).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};

use super::Role;
use super::stream::{self, CAPA, Frame};
use crate::clock;
use crate::resp::{CRLF, DecodeLimits, RequestDecoder};
use crate::services::Services;

/// Longest a handshake reply line may be.
const LINE_MAX: usize = 1024;

/// Largest full-sync payload taken: a snapshot of 2^36 dense slots (the capacity maximum) is
/// 512 GiB; a declared length above this is a broken leader, not a big store.
const PAYLOAD_MAX_BYTES: u64 = 1 << 40;

/// Runs while this process follows, for the epoch it was started with.
pub async fn run(services: Arc<Services>, epoch: u64) {
    let mut shutdown = services.shutdown_requested();
    loop {
        let Role::Follower { host, port } = services.replication.role() else {
            return;
        };
        if services.replication.epoch() != epoch || *shutdown.borrow_and_update() {
            return;
        }
        // A role change (REPLICAOF) ends this link at once, wherever it is: two links must
        // never apply streams at the same time.
        let session = tokio::select! {
            result = follow_once(&services, &host, port, epoch) => result,
            _ = role_changed(&services, epoch) => return,
            _ = shutdown.changed() => return,
        };
        match session {
            // The leader stopped or the network failed: Sentinel's business, retried here.
            Err(LinkError::Lost(err)) => {
                info!(leader = %format!("{host}:{port}"), "replication link lost: {err}");
            }
            Err(LinkError::Broken(err)) => {
                warn!(leader = %format!("{host}:{port}"), "replication link: {err}");
            }
            Ok(()) => {}
        }
        services.replication.update_link(|link| {
            if link.up {
                link.down_since_ms = clock::now_ms();
            }
            link.up = false;
            link.sync_in_progress = false;
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Why a link ended: the connection went away (the leader stopped, the network failed), or
/// the leader refused or sent something wrong. Plain `String` errors are the second kind.
enum LinkError {
    Lost(String),
    Broken(String),
}

impl From<String> for LinkError {
    fn from(err: String) -> Self {
        LinkError::Broken(err)
    }
}

fn lost(what: impl std::fmt::Display) -> LinkError {
    LinkError::Lost(what.to_string())
}

/// The link's connection, from `--bind-source-addr` when set (as Redis's `bind-source-addr`:
/// a leader, a firewall or a test proxy then sees which follower it is by its address).
async fn connect(
    host: &str,
    port: u16,
    source: Option<std::net::IpAddr>,
) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect((host, port)).await;
    };
    let mut last_err = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("the host resolved to no address")))
}

/// Completes once the role's epoch is no longer `epoch`.
async fn role_changed(services: &Services, epoch: u64) {
    let mut roles = services.replication.watch_role();
    while services.replication.epoch() == epoch {
        if roles.changed().await.is_err() {
            // The sender lives as long as the services: nothing will ever change.
            std::future::pending::<()>().await;
        }
    }
}

async fn follow_once(
    services: &Arc<Services>,
    host: &str,
    port: u16,
    epoch: u64,
) -> Result<(), LinkError> {
    let replication = &services.replication;
    let mut socket = connect(host, port, services.config.bind_source_addr)
        .await
        .map_err(|e| lost(format!("connect: {e}")))?;
    let _ = socket.set_nodelay(true);
    let mut input = BytesMut::with_capacity(64 * 1024);
    command(&mut socket, &mut input, &[b"PING"]).await?;
    if let Some(password) = &replication.masterauth {
        let reply = command(&mut socket, &mut input, &[b"AUTH", password.as_bytes()]).await?;
        if reply.starts_with('-') {
            return Err(format!("AUTH refused: {reply}").into());
        }
    }
    let config = &services.config;
    let listening_port = config
        .replica_announce_port
        .unwrap_or_else(|| services.identity.listen_addr.port())
        .to_string();
    command(
        &mut socket,
        &mut input,
        &[b"REPLCONF", b"listening-port", listening_port.as_bytes()],
    )
    .await?;
    if let Some(ip) = &config.replica_announce_ip {
        command(
            &mut socket,
            &mut input,
            &[b"REPLCONF", b"ip-address", ip.as_bytes()],
        )
        .await?;
    }
    command(
        &mut socket,
        &mut input,
        &[
            b"REPLCONF",
            b"capa",
            b"eof",
            b"capa",
            b"psync2",
            b"capa",
            CAPA.as_bytes(),
        ],
    )
    .await?;
    let applied = replication.end_offset();
    let (psync_id, psync_offset) = replication.psync_request();
    let reply = command(
        &mut socket,
        &mut input,
        &[b"PSYNC", psync_id.as_bytes(), psync_offset.as_bytes()],
    )
    .await?;
    let words: Vec<&str> = reply.split(' ').collect();
    match words.as_slice() {
        ["+FULLRESYNC", id, offset] => {
            let offset: u64 = offset
                .parse()
                .map_err(|_| format!("bad FULLRESYNC offset in {reply}"))?;
            replication.update_link(|link| link.sync_in_progress = true);
            let payload = read_payload(&mut socket, &mut input).await?;
            if replication.epoch() != epoch {
                return Ok(());
            }
            load_snapshot(services, payload).await?;
            replication.adopt(id, offset);
            info!(leader = %format!("{host}:{port}"), offset, "full sync loaded");
        }
        ["+CONTINUE", rest @ ..] => {
            if let Some(id) = rest.first() {
                replication.adopt_id(id);
            }
            info!(leader = %format!("{host}:{port}"), offset = applied, "continuing by offset");
        }
        _ => return Err(format!("PSYNC refused: {reply}").into()),
    }
    replication.update_link(|link| {
        link.up = true;
        link.sync_in_progress = false;
        link.last_io_ms = clock::now_ms();
    });
    apply_stream(services, &mut socket, input, epoch).await
}

/// Applies frames as they arrive, acknowledging the applied offset every second.
async fn apply_stream(
    services: &Services,
    socket: &mut TcpStream,
    mut input: BytesMut,
    epoch: u64,
) -> Result<(), LinkError> {
    let replication = &services.replication;
    let mut decoder = RequestDecoder::new();
    let mut args = Vec::new();
    let limits = DecodeLimits {
        bulk_len_max: crate::limits::BULK_LEN_MAX_DEFAULT,
        args_max: 16,
        authenticated: true,
    };
    let mut ack = tokio::time::interval(Duration::from_secs(1));
    loop {
        loop {
            let before = input.len();
            match decoder.decode_into(&mut input, &limits, &mut args) {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => return Err(format!("bad stream: {}", err.message()).into()),
            }
            let frame_bytes = before - input.len();
            if replication.epoch() != epoch {
                // Promoted (or pointed elsewhere): nothing more from this leader is applied,
                // not even what is already buffered.
                return Ok(());
            }
            let ack_wanted = apply(services, &args)?;
            let applied_offset = {
                let mut backlog = replication.backlog();
                // The follower keeps the stream it applied, byte for byte, so that once
                // promoted it can let the other followers continue from their offsets.
                let start = backlog.end_offset();
                backlog.push(&encode_again(&args));
                debug_assert_eq!(backlog.end_offset() - start, frame_bytes as u64);
                replication.appended(&backlog);
                backlog.end_offset()
            };
            if ack_wanted {
                // After the GETACK itself is counted: a leader's WAIT then sees this follower
                // at its own end offset when nothing else was produced since.
                send_ack(socket, applied_offset).await?;
            }
        }
        if replication.epoch() != epoch {
            return Ok(());
        }
        tokio::select! {
            read = socket.read_buf(&mut input) => match read {
                Ok(0) => return Err(lost("the leader closed the link")),
                Ok(_) => replication.update_link(|link| link.last_io_ms = clock::now_ms()),
                Err(e) => return Err(lost(format!("read: {e}"))),
            },
            _ = ack.tick() => send_ack(socket, replication.end_offset()).await?,
        }
    }
}

/// A frame's bytes as the leader sent them (frames are arrays of bulk strings, so encoding
/// the decoded arguments again gives the same bytes).
fn encode_again(args: &[bytes::Bytes]) -> Vec<u8> {
    let parts: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    let mut out = Vec::new();
    stream::frame(&mut out, &parts);
    out
}

/// Applies one frame; true if it asks for an acknowledgement (`REPLCONF GETACK`).
fn apply(services: &Services, args: &[bytes::Bytes]) -> Result<bool, LinkError> {
    match stream::parse(args)? {
        Frame::State { shard, batch } => {
            services
                .store
                .apply_changes(shard, batch, clock::now_ms())
                .map_err(|e| format!("bad STATE frame for shard {shard}: {}", e.0))?;
        }
        Frame::FlushAll => {
            services
                .store
                .flush(clock::now_ms())
                .map_err(|e| format!("FLUSHALL: {e}"))?;
        }
        Frame::Publish { channel, message } => {
            services.pubsub.publish(channel, message);
        }
        Frame::GetAck => return Ok(true),
        Frame::Ping | Frame::Unknown => {}
    }
    Ok(false)
}

async fn send_ack(socket: &mut TcpStream, offset: u64) -> Result<(), LinkError> {
    let offset = offset.to_string();
    let mut out = Vec::new();
    stream::frame(&mut out, &[b"REPLCONF", b"ACK", offset.as_bytes()]);
    socket
        .write_all(&out)
        .await
        .map_err(|e| lost(format!("ack: {e}")))
}

/// Sends one handshake command and returns its one-line reply.
async fn command(
    socket: &mut TcpStream,
    input: &mut BytesMut,
    parts: &[&[u8]],
) -> Result<String, LinkError> {
    let mut out = Vec::new();
    stream::frame(&mut out, parts);
    socket
        .write_all(&out)
        .await
        .map_err(|e| lost(format!("handshake: {e}")))?;
    read_line(socket, input).await
}

async fn read_line(socket: &mut TcpStream, input: &mut BytesMut) -> Result<String, LinkError> {
    loop {
        if let Some(end) = input.windows(2).position(|w| w == CRLF) {
            let line = input.split_to(end + 2);
            return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        if input.len() > LINE_MAX {
            return Err(LinkError::Broken("handshake reply too long".into()));
        }
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read_buf(input))
            .await
            .map_err(|_| lost("the leader did not answer within 10 s"))?;
        match read {
            Ok(0) => return Err(lost("the leader closed the link")),
            Ok(_) => {}
            Err(e) => return Err(lost(format!("read: {e}"))),
        }
    }
}

/// `$<len>\r\n` then `len` bytes (no trailing CRLF, as Redis frames its RDB payload).
async fn read_payload(socket: &mut TcpStream, input: &mut BytesMut) -> Result<Vec<u8>, LinkError> {
    let line = read_line(socket, input).await?;
    let len: u64 = line
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .filter(|&n| n <= PAYLOAD_MAX_BYTES)
        .ok_or_else(|| format!("bad full-sync header: {line}"))?;
    let len = usize::try_from(len).map_err(|_| "full-sync payload too big".to_string())?;
    let mut payload = Vec::with_capacity(len.min(64 * 1024 * 1024));
    let buffered = input.len().min(len);
    payload.extend_from_slice(&input.split_to(buffered));
    while payload.len() < len {
        let want = (len - payload.len()).min(1024 * 1024);
        let mut chunk = vec![0u8; want];
        let n = socket
            .read(&mut chunk)
            .await
            .map_err(|e| lost(format!("full sync: {e}")))?;
        if n == 0 {
            return Err(lost("the leader closed the link during the full sync"));
        }
        payload.extend_from_slice(&chunk[..n]);
    }
    Ok(payload)
}

/// Replaces the store's contents with the snapshot, on a thread of its own.
async fn load_snapshot(services: &Arc<Services>, payload: Vec<u8>) -> Result<(), String> {
    let (done, result) = tokio::sync::oneshot::channel();
    let services = Arc::clone(services);
    std::thread::Builder::new()
        .name("presenced-fullsync-load".into())
        .spawn(move || {
            let now_ms = clock::now_ms();
            let path = std::path::Path::new("full-sync payload");
            let loaded = services
                .store
                .flush(now_ms)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    crate::snapshot::load_bytes(&services.store, path, &payload, now_ms)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            if loaded.is_err() {
                let _ = services.store.flush(now_ms);
            }
            let _ = done.send(loaded);
        })
        .map_err(|e| e.to_string())?;
    result
        .await
        .map_err(|_| "the loading thread ended".to_string())?
}
