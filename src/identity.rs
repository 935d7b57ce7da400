//! Who this server is, as `INFO server`, `HELLO` and (next) replication report it: the
//! `run_id`, when it started, and the address it listens on.

use std::net::SocketAddr;

use crate::clock;

#[derive(Debug, Clone)]
pub struct Identity {
    /// 40 hexadecimal characters, new on every start, like Redis's run_id.
    pub run_id: String,
    pub started_ms: u64,
    pub listen_addr: SocketAddr,
}

impl Identity {
    pub fn new(listen_addr: SocketAddr, started_ms: u64) -> Identity {
        Identity {
            run_id: random_hex_40(),
            started_ms,
            listen_addr,
        }
    }
}

/// 40 random hexadecimal characters (a run_id, a replication ID). Seeded from the standard
/// library's random hasher keys, so no extra dependency is needed.
pub fn random_hex_40() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::with_capacity(48);
    for round in 0..3u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(round);
        hasher.write_u64(clock::now_us());
        hasher.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", hasher.finish()));
    }
    id.truncate(40);
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_id_is_40_hex() {
        let id = super::random_hex_40();
        assert_eq!(id.len(), 40);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, super::random_hex_40());
    }
}
