//! Keyspace notifications with Redis's flags, channels and messages:
//! `__keyspace@0__:<key>` carries the event name, `__keyevent@0__:<event>` carries the key.

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use super::KeyPattern;
use crate::pubsub::PubSub;
use crate::store::{Cause, State, Transition};

/// Redis's event classes (`notify-keyspace-events` letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NotifyFlags(pub u32);

impl NotifyFlags {
    pub const GENERIC: u32 = 1 << 0; // g
    pub const STRING: u32 = 1 << 1; // $
    pub const LIST: u32 = 1 << 2; // l
    pub const SET: u32 = 1 << 3; // s
    pub const HASH: u32 = 1 << 4; // h
    pub const ZSET: u32 = 1 << 5; // z
    pub const EXPIRED: u32 = 1 << 6; // x
    pub const EVICTED: u32 = 1 << 7; // e
    pub const STREAM: u32 = 1 << 8; // t
    pub const MODULE: u32 = 1 << 9; // d
    pub const NEW: u32 = 1 << 10; // n
    pub const KEYSPACE: u32 = 1 << 11; // K
    pub const KEYEVENT: u32 = 1 << 12; // E
    pub const KEY_MISS: u32 = 1 << 13; // m
    /// `A`: every class but `n` and `m`, as in Redis.
    pub const ALL: u32 = Self::GENERIC
        | Self::STRING
        | Self::LIST
        | Self::SET
        | Self::HASH
        | Self::ZSET
        | Self::EXPIRED
        | Self::EVICTED
        | Self::STREAM
        | Self::MODULE;

    const LETTERS: [(char, u32); 13] = [
        ('g', Self::GENERIC),
        ('$', Self::STRING),
        ('l', Self::LIST),
        ('s', Self::SET),
        ('h', Self::HASH),
        ('z', Self::ZSET),
        ('x', Self::EXPIRED),
        ('e', Self::EVICTED),
        ('t', Self::STREAM),
        ('d', Self::MODULE),
        ('n', Self::NEW),
        ('K', Self::KEYSPACE),
        ('E', Self::KEYEVENT),
    ];

    /// Parses Redis's letters; `None` for a character Redis refuses.
    pub fn parse(text: &[u8]) -> Option<NotifyFlags> {
        let mut flags = 0;
        for &c in text {
            flags |= match c as char {
                'A' => Self::ALL,
                'm' => Self::KEY_MISS,
                c => Self::LETTERS.iter().find(|(l, _)| *l == c)?.1,
            };
        }
        Some(NotifyFlags(flags))
    }

    /// Redis's canonical spelling, as `CONFIG GET` shows it.
    pub fn to_letters(self) -> String {
        let mut out = String::new();
        if self.0 & Self::ALL == Self::ALL {
            // As Redis prints it: `A` stands for the classes it covers, and `n` is not shown.
            out.push('A');
        } else {
            for (letter, flag) in &Self::LETTERS[..11] {
                if self.0 & flag != 0 {
                    out.push(*letter);
                }
            }
        }
        for (letter, flag) in [
            ('K', Self::KEYSPACE),
            ('E', Self::KEYEVENT),
            ('m', Self::KEY_MISS),
        ] {
            if self.0 & flag != 0 {
                out.push(letter);
            }
        }
        out
    }
}

/// The key pattern and the notification flags, shared by commands and the event sink.
pub struct Keyspace {
    pub pattern: KeyPattern,
    flags: AtomicU32,
}

impl Keyspace {
    pub fn new(pattern: KeyPattern) -> Keyspace {
        Keyspace {
            pattern,
            flags: AtomicU32::new(0),
        }
    }

    pub fn flags(&self) -> NotifyFlags {
        NotifyFlags(self.flags.load(Ordering::Relaxed))
    }

    pub fn set_flags(&self, flags: NotifyFlags) {
        self.flags.store(flags.0, Ordering::Relaxed);
    }

    /// Publishes `event` for `key` if its class is enabled, as Redis's `notifyKeyspaceEvent`
    /// (keyspace channel first, then keyevent).
    pub fn notify(&self, pubsub: &PubSub, class: u32, event: &str, key: &[u8]) {
        let mut events = Vec::new();
        self.collect(class, event, key, &mut events);
        if pubsub.has_subscribers() {
            pubsub.publish_unresolved(events);
        }
    }

    fn collect(&self, class: u32, event: &str, key: &[u8], out: &mut Vec<(Bytes, Bytes)>) {
        let flags = self.flags().0;
        if flags & class == 0 || flags & (NotifyFlags::KEYSPACE | NotifyFlags::KEYEVENT) == 0 {
            return;
        }
        if flags & NotifyFlags::KEYSPACE != 0 {
            let mut channel = b"__keyspace@0__:".to_vec();
            channel.extend_from_slice(key);
            out.push((
                Bytes::from(channel),
                Bytes::copy_from_slice(event.as_bytes()),
            ));
        }
        if flags & NotifyFlags::KEYEVENT != 0 {
            let channel = format!("__keyevent@0__:{event}");
            out.push((Bytes::from(channel), Bytes::copy_from_slice(key)));
        }
    }

    /// The keyspace side of presence transitions: a key that stopped existing because time ran
    /// out is `expired`; one removed by a logout is `del`.
    pub fn notify_transitions(&self, pubsub: &PubSub, transitions: &[Transition]) {
        let flags = self.flags().0;
        if flags & (NotifyFlags::KEYSPACE | NotifyFlags::KEYEVENT) == 0 {
            return;
        }
        let mut events = Vec::new();
        for t in transitions.iter().filter(|t| t.state == State::Offline) {
            let (class, event) = match t.cause {
                Cause::Timeout => (NotifyFlags::EXPIRED, "expired"),
                Cause::Logout => (NotifyFlags::GENERIC, "del"),
                Cause::Change => continue,
            };
            if flags & class == 0 {
                continue;
            }
            let key = self.pattern.key_for(&t.user.to_bytes());
            self.collect(class, event, &key, &mut events);
        }
        if pubsub.has_subscribers() {
            pubsub.publish_unresolved(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip_like_redis() {
        let cases = [
            ("KEx", "xKE"),
            ("Ex", "xE"),
            ("AKE", "AKE"),
            ("g$xKE", "g$xKE"),
            ("", ""),
        ];
        for (input, canonical) in cases {
            let flags = NotifyFlags::parse(input.as_bytes()).expect("valid");
            assert_eq!(flags.to_letters(), canonical, "{input}");
        }
        assert!(NotifyFlags::parse(b"Q").is_none());
    }
}
