//! presenced: an in-memory presence datastore that speaks RESP.
//!
//! Codemap: `server` accepts connections and runs offline detection; `connection` turns socket
//! bytes into requests with `resp` and runs them through `cmd`; `cmd` holds the command table;
//! `store` keeps every user's 8-byte slot in shards; `expiry` holds the timing wheel.
//! `docs/ARCHITECTURE.md` is the full map.

#[cfg(test)]
mod alloc_count;
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: alloc_count::CountingAllocator = alloc_count::CountingAllocator;

pub mod clients;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod config_file;
pub mod connection;
pub mod dropin;
pub mod expiry;
pub mod glob;
pub mod identity;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod pubsub;
pub mod replication;
pub mod resp;
pub mod server;
pub mod services;
pub mod session;
pub mod slowlog;
pub mod snapshot;
pub mod stats;
pub mod store;
