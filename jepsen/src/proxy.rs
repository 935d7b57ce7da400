//! The faulty network: one TCP proxy in front of each data node. Every process connects from
//! a loopback address of its own (`127.0.0.x`), so a proxy knows which process each connection
//! comes from and applies that link's rule: pass, delay, hold one direction (a one-way
//! partition: under TCP a link that loses every packet stalls, it never loses bytes mid-stream),
//! blackhole (both directions held, the connection left hanging), or cut (connections closed,
//! new ones refused at once).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a proxy does with one source's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// Close its connections and refuse new ones.
    pub cut: bool,
    /// Hold what it sends to the node (not read until the rule is lifted).
    pub drop_to_node: bool,
    /// Hold what the node sends back to it.
    pub drop_to_source: bool,
    /// Hold every chunk this long before forwarding it.
    pub delay_ms: u64,
}

impl Rule {
    pub const PASS: Rule = Rule {
        cut: false,
        drop_to_node: false,
        drop_to_source: false,
        delay_ms: 0,
    };
    pub const CUT: Rule = Rule {
        cut: true,
        ..Rule::PASS
    };
    pub const BLACKHOLE: Rule = Rule {
        drop_to_node: true,
        drop_to_source: true,
        ..Rule::PASS
    };
}

/// A proxy's rules, shared with its connections; every change is announced so that open
/// connections apply it at once.
#[derive(Clone)]
pub struct Rules {
    by_source: Arc<Mutex<HashMap<IpAddr, Rule>>>,
    changed: watch::Sender<u64>,
}

impl Rules {
    fn new() -> Rules {
        Rules {
            by_source: Arc::new(Mutex::new(HashMap::new())),
            changed: watch::channel(0).0,
        }
    }

    pub fn get(&self, source: IpAddr) -> Rule {
        let rules = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        rules.get(&source).copied().unwrap_or_default()
    }

    pub fn set(&self, source: IpAddr, rule: Rule) {
        let mut rules = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        if rule == Rule::PASS {
            rules.remove(&source);
        } else {
            rules.insert(source, rule);
        }
        drop(rules);
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn clear(&self) {
        self.by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.changed.send_modify(|n| *n += 1);
    }
}

pub struct Proxy {
    pub listen: SocketAddr,
    pub rules: Rules,
}

impl Proxy {
    /// Listens on `listen` and forwards to `target` until the runtime ends.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let rules = Rules::new();
        let accepting = rules.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if accepting.get(peer.ip()).cut {
                    drop(client);
                    continue;
                }
                let rules = accepting.clone();
                tokio::spawn(async move {
                    if let Ok(node) = TcpStream::connect(target).await {
                        pipe(client, node, peer.ip(), rules).await;
                    }
                });
            }
        });
        Ok(Proxy { listen, rules })
    }
}

/// Forwards both ways until either side closes or the source's rule cuts the link. A blocked
/// direction is not read (its bytes wait in the kernel's buffers, the sender's fill up), as a
/// link that loses every packet behaves under TCP: nothing is lost or reordered, it stalls,
/// and it resumes when the rule is lifted (bytes are never discarded mid-stream, which no TCP
/// connection can do).
async fn pipe(client: TcpStream, node: TcpStream, source: IpAddr, rules: Rules) {
    let _ = client.set_nodelay(true);
    let _ = node.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut node_read, mut node_write) = node.into_split();
    let mut changes = rules.changed.subscribe();
    let mut to_node = [0u8; 32 * 1024];
    let mut to_source = [0u8; 32 * 1024];
    loop {
        let rule = rules.get(source);
        if rule.cut {
            return;
        }
        tokio::select! {
            read = client_read.read(&mut to_node), if !rule.drop_to_node => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                if rule.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
                }
                if node_write.write_all(&to_node[..n]).await.is_err() {
                    return;
                }
            }
            read = node_read.read(&mut to_source), if !rule.drop_to_source => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                if rule.delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
                }
                if client_write.write_all(&to_source[..n]).await.is_err() {
                    return;
                }
            }
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}
