//! Redis drop-in mode: which keys are presence keys (`--key-pattern`), and Redis keyspace
//! notifications (`notify-keyspace-events`) for them.

mod key_pattern;
mod notify;

pub use key_pattern::{KeyPattern, KeyPatternError};
pub use notify::{Keyspace, NotifyFlags};
