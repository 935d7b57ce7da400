//! The one integration-test binary: every module starts the real server through `support`.

mod admin;
mod architecture;
mod auth;
mod clients;
mod closing;
mod config_file;
mod dropin;
mod errors;
mod exactness;
mod limits;
mod maxmemory;
mod pause;
mod presence;
mod protocol;
mod pubsub;
mod replication;
mod replication_safety;
mod slowlog;
mod smoke;
mod snapshot;
mod subscriber;
mod support;
mod transactions;
mod util;
