//! The database under test: a presenced leader, two followers and three real
//! `redis-sentinel` processes on loopback, each data node behind a proxy of ours. The
//! supervisor starts, kills, pauses and restarts them, and every process it started dies with
//! it (`kill_on_drop`, and `stop_all` on the way out).
//!
//! Addresses: node `i` listens on `127.0.0.1:real_ports[i]`, and everyone reaches it through its
//! proxy at `127.0.0.1:proxy_ports[i]` (the address it announces, so Sentinel and clients only
//! ever know the proxy). Each process connects from a loopback address of its own, which is how
//! a proxy knows whose traffic it carries: node `i` from `127.0.0.(11+i)`, sentinel `j` from
//! `127.0.0.(21+j)`, client `k` from `127.0.0.(31+k)`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::proxy::Proxy;

pub const NODES: usize = 3;
pub const SENTINELS: usize = 3;
pub const MASTER_NAME: &str = "presenced";

pub fn node_source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i as u8))
}

pub fn sentinel_source(j: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 21 + j as u8))
}

pub fn client_source(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 31 + (k % 200) as u8))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

/// A free loopback port, never one handed out before in this run: a port bound and released
/// is often handed out again by the kernel at once, and two servers given it would clash.
pub fn free_port() -> std::io::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

pub struct Settings {
    pub presenced: PathBuf,
    pub sentinel: PathBuf,
    pub root: PathBuf,
    pub ttl_s: u64,
    pub down_after_ms: u64,
    /// libfaketime, preloaded into every data node so the clock nemesis can step its wall
    /// clock (`None`: nodes run on the real clock).
    pub faketime: Option<PathBuf>,
}

/// Where Debian's `faketime` package puts the library (the multi-threaded variant, as
/// presenced runs threads).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

pub struct Cluster {
    pub settings: Settings,
    pub real_ports: [u16; NODES],
    pub proxies: Vec<Proxy>,
    pub sentinel_ports: [u16; SENTINELS],
    nodes: Vec<Option<Child>>,
    sentinels: Vec<Option<Child>>,
}

impl Cluster {
    pub async fn start(settings: Settings) -> Result<Cluster, String> {
        std::fs::create_dir_all(&settings.root).map_err(|e| e.to_string())?;
        let mut real_ports = [0; NODES];
        let mut proxy_ports = [0; NODES];
        for i in 0..NODES {
            real_ports[i] = free_port().map_err(|e| e.to_string())?;
            proxy_ports[i] = free_port().map_err(|e| e.to_string())?;
        }
        let mut sentinel_ports = [0; SENTINELS];
        for port in &mut sentinel_ports {
            *port = free_port().map_err(|e| e.to_string())?;
        }
        let mut proxies = Vec::new();
        for i in 0..NODES {
            let proxy = Proxy::start(loopback(proxy_ports[i]), loopback(real_ports[i]))
                .await
                .map_err(|e| format!("proxy {i}: {e}"))?;
            proxies.push(proxy);
        }
        let mut cluster = Cluster {
            settings,
            real_ports,
            proxies,
            sentinel_ports,
            nodes: (0..NODES).map(|_| None).collect(),
            sentinels: (0..SENTINELS).map(|_| None).collect(),
        };
        for i in 0..NODES {
            cluster.write_node_conf(i)?;
            cluster.start_node(i).await?;
        }
        for j in 0..SENTINELS {
            cluster.start_sentinel(j)?;
        }
        Ok(cluster)
    }

    pub fn proxy_addr(&self, i: usize) -> SocketAddr {
        self.proxies[i].listen
    }

    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinel_ports.iter().map(|&p| loopback(p)).collect()
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.settings.root.join(format!("node{i}"))
    }

    fn conf_path(&self, i: usize) -> PathBuf {
        self.settings.root.join(format!("node{i}.conf"))
    }

    /// Node `i`'s config file: written once; Sentinel's CONFIG REWRITE keeps its role in it
    /// from then on, so a node restarted after a kill comes back in the role it last had.
    fn write_node_conf(&self, i: usize) -> Result<(), String> {
        let mut conf = format!(
            "# node {i} of a fault-harness run\n\
             bind 127.0.0.1\nport {port}\ndir {dir}\nshards 2\nttl {ttl}\n\
             snapshot-interval 1\nlog-level info\n\
             replica-announce-ip 127.0.0.1\nreplica-announce-port {proxy}\n\
             bind-source-addr {source}\n\
             # As a careful operator runs it: an old leader cut off from its followers stops\n\
             # taking writes (and declaring users offline) two seconds after their last ACK.\n\
             min-replicas-to-write 1\nmin-replicas-max-lag 2\n",
            port = self.real_ports[i],
            dir = self.node_dir(i).display(),
            ttl = self.settings.ttl_s,
            proxy = self.proxy_addr(i).port(),
            source = node_source(i),
        );
        if i > 0 {
            conf.push_str(&format!(
                "replicaof 127.0.0.1 {}\n",
                self.proxy_addr(0).port()
            ));
        }
        std::fs::write(self.conf_path(i), conf).map_err(|e| format!("node {i} conf: {e}"))
    }

    /// The file libfaketime reads node `i`'s wall-clock offset from (`+0`, `+30s`, `-1.5s`).
    pub fn clock_file(&self, i: usize) -> PathBuf {
        self.settings.root.join(format!("node{i}.faketime"))
    }

    /// Sets node `i`'s wall-clock offset in milliseconds; it takes effect within
    /// libfaketime's one-second cache.
    pub fn set_clock_offset(&self, i: usize, offset_ms: i64) -> Result<(), String> {
        write_clock_offset(&self.clock_file(i), offset_ms)
    }

    pub async fn start_node(&mut self, i: usize) -> Result<(), String> {
        let log = log_file(&self.settings.root.join(format!("node{i}.log")))?;
        let mut command = Command::new(&self.settings.presenced);
        if let Some(lib) = &self.settings.faketime {
            if !self.clock_file(i).exists() {
                self.set_clock_offset(i, 0)?;
            }
            // Only the wall clock is faked: presenced's monotonic clock is the real one, as
            // it is on a machine whose clock NTP or an operator steps.
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", self.clock_file(i))
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .arg(self.conf_path(i))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("node {i}: {}: {e}", self.settings.presenced.display()))?;
        self.nodes[i] = Some(child);
        // Answering PING directly (not through its proxy, which may be cutting us off).
        let addr = loopback(self.real_ports[i]);
        for _ in 0..400 {
            if let Ok(mut con) = crate::resp::Connection::connect(
                addr,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                std::time::Duration::from_millis(200),
            )
            .await
                && con.call(&[b"PING"]).await.is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        Err(format!("node {i} did not answer within 10 s"))
    }

    fn start_sentinel(&mut self, j: usize) -> Result<(), String> {
        let root = &self.settings.root;
        let conf_path = root.join(format!("sentinel{j}.conf"));
        // It listens on its source address too: the address it announces to the others is
        // the one its connections come from.
        let conf = format!(
            "port {port}\nbind 127.0.0.1 {source}\nbind-source-addr {source}\ndaemonize no\n\
             logfile {log}\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {leader} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {down}\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            port = self.sentinel_ports[j],
            source = sentinel_source(j),
            log = root.join(format!("sentinel{j}.log")).display(),
            dir = root.display(),
            leader = self.proxy_addr(0).port(),
            down = self.settings.down_after_ms,
        );
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let child = Command::new(&self.settings.sentinel)
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("sentinel {j}: {}: {e}", self.settings.sentinel.display()))?;
        self.sentinels[j] = Some(child);
        Ok(())
    }

    /// Damages node `i`'s newest snapshot (the node is down): truncates it, flips a byte, or
    /// zeroes 4 KiB, chosen by `pick` (0, 1, 2) at `fraction` (0..1) of its length. Says what.
    pub fn damage_newest_snapshot(&self, i: usize, pick: u64, fraction: f64) -> String {
        let dir = self.node_dir(i);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("presenced-") && n.ends_with(".snap"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let Some(newest) = files.pop() else {
            return format!("node {i} had no snapshot to damage");
        };
        let name = newest.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let Ok(mut bytes) = std::fs::read(&newest) else {
            return format!("node {i}: {name} could not be read");
        };
        let at = ((bytes.len() as f64 * fraction) as usize).min(bytes.len().saturating_sub(1));
        let what = match pick {
            0 => {
                bytes.truncate(at);
                format!("truncated to {at} of its bytes")
            }
            1 => {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte ^= 0x5a;
                }
                format!("byte {at} flipped")
            }
            _ => {
                let end = (at + 4096).min(bytes.len());
                bytes[at..end].fill(0);
                format!("bytes {at}..{end} zeroed")
            }
        };
        match std::fs::write(&newest, bytes) {
            Ok(()) => format!(
                "node {i}: newest snapshot {name} {what} ({} files)",
                files.len() + 1
            ),
            Err(e) => format!("node {i}: {name} could not be written: {e}"),
        }
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].as_ref().and_then(Child::id)
    }

    pub async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            let _ = child.kill().await;
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub fn pause(&self, i: usize, stop: bool) {
        if let Some(pid) = self.pid(i) {
            let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) with a pid this supervisor spawned and still holds (not reaped),
            // and a valid signal number; it touches no memory of ours.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    pub async fn stop_all(&mut self) {
        for i in 0..NODES {
            self.pause(i, false);
            self.kill(i).await;
        }
        for slot in &mut self.sentinels {
            if let Some(mut child) = slot.take() {
                let _ = child.kill().await;
            }
        }
    }
}

/// Writes a libfaketime offset file: `offset_ms` as signed seconds.
pub fn write_clock_offset(path: &Path, offset_ms: i64) -> Result<(), String> {
    let text = format!("{:+.3}s\n", offset_ms as f64 / 1_000.0);
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn log_file(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}
