//! The replication backlog: the last `capacity` bytes of the stream, addressed by offset.
//!
//! Offsets count stream bytes from the start of the replication ID, as Redis's do: a byte's
//! offset is its position plus one, so `end_offset` is how many bytes were ever produced and a
//! follower that has applied up to offset N asks to continue from N + 1.

use std::collections::VecDeque;

pub struct Backlog {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Offset of the last byte produced (0 before any).
    end_offset: u64,
}

impl Backlog {
    pub fn new(capacity: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            capacity,
            end_offset: 0,
        }
    }

    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// Offset of the oldest byte still held (`end_offset + 1` when empty).
    pub fn first_offset(&self) -> u64 {
        self.end_offset + 1 - self.bytes.len() as u64
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Appends stream bytes, dropping the oldest beyond the capacity.
    pub fn push(&mut self, frame: &[u8]) {
        self.end_offset += frame.len() as u64;
        if frame.len() >= self.capacity {
            self.bytes.clear();
            self.bytes.extend(&frame[frame.len() - self.capacity..]);
            return;
        }
        let overflow = (self.bytes.len() + frame.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.bytes.extend(frame);
    }

    /// Whether the byte at `offset` can still be sent (or is the next one to be produced).
    pub fn holds(&self, offset: u64) -> bool {
        offset >= self.first_offset() && offset <= self.end_offset + 1
    }

    /// Copies the bytes from `offset` on (at most `max`) into `out`; `None` if they are gone.
    pub fn read_from(&self, offset: u64, max: usize, out: &mut Vec<u8>) -> Option<usize> {
        if !self.holds(offset) {
            return None;
        }
        let skip = (offset - self.first_offset()) as usize;
        let take = (self.bytes.len() - skip).min(max);
        out.extend(self.bytes.range(skip..skip + take));
        Some(take)
    }

    /// Empties the backlog, the stream going on from `end_offset` (a follower after a full
    /// sync).
    pub fn reset(&mut self, end_offset: u64) {
        self.bytes.clear();
        self.end_offset = end_offset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_by_offset() {
        let mut b = Backlog::new(8);
        assert!(b.holds(1));
        b.push(b"abcde");
        assert_eq!((b.first_offset(), b.end_offset()), (1, 5));
        b.push(b"fghij");
        assert_eq!((b.first_offset(), b.end_offset()), (3, 10));
        let mut out = Vec::new();
        assert_eq!(b.read_from(4, 100, &mut out), Some(7));
        assert_eq!(out, b"defghij");
        assert_eq!(b.read_from(2, 100, &mut Vec::new()), None);
        assert_eq!(b.read_from(11, 100, &mut Vec::new()), Some(0));
        assert!(!b.holds(12));
        b.push(b"0123456789");
        assert_eq!((b.first_offset(), b.end_offset()), (13, 20));
        b.reset(100);
        assert!(b.holds(101) && !b.holds(100));
    }
}
