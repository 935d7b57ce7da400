//! The packed group of a replication `STATE` frame (stream version 2,
//! docs/design/replication.md): the plain dense users of one drain — a numeric ID, a slot with
//! no extras entry — bit-packed, because they are nearly all of the stream under heartbeat
//! load and a whole 18-byte record each made the stream half the size of the clients' traffic.
//!
//! Users are sorted by dense index, so an index is sent as the gap from the previous one; a
//! last-seen is sent as its distance from the group's earliest (one drain holds a millisecond
//! or two of heartbeats, so most are a few bits); TTL and app status are one bit when they are
//! the previous user's. Gaps and distances are Rice-coded with a parameter chosen per group
//! from the values themselves, and an escape keeps an outlier (a user expired 30 s after their
//! last heartbeat among fresh ones) at 88 bits instead of a long unary run.
//!
//! ```text
//! group  = count: varint, [first_index: varint, seen_base: varint, k_gap: u8, k_seen: u8, bits]
//! bits   = per user, LSB first: [gap: rice(k_gap)] seen: rice(k_seen) same_tail: 1 [tail: 19]
//! rice(k, v) = q = v >> k; q < 24: q ones, a zero, k low bits of v | 24 ones, v as 64 bits
//! ```
//!
//! No encoding knowledge of the slot lives here: `Slot::packed_parts` splits a slot into the
//! last-seen offset and its 19-bit tail (TTL and app status), `Slot::from_packed_parts` joins
//! them, and refuses what a plain slot cannot be.

use super::persist::ImportError;
use super::slot::Slot;

/// A run of this many one-bits starts a raw 64-bit value instead of a Rice code.
const ESCAPE_ONES: u64 = 24;
/// Bits of a slot's tail (TTL and app status) when it differs from the previous user's.
const TAIL_BITS: u32 = 19;
/// The largest Rice parameter: a value needs no more than 64 bits anyway.
const K_MAX: u8 = 63;

/// One plain dense user: its index in the shard's dense array and its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedUser {
    pub index: u64,
    pub slot: Slot,
}

/// Appends the group of `users` to `out`, sorting them by index first. Every slot must be
/// plain (`Slot::packed_parts` is `Some`) and every index distinct; the caller routes the
/// others to whole records.
pub fn encode(users: &mut [PackedUser], out: &mut Vec<u8>) {
    put_varint(out, users.len() as u64);
    if users.is_empty() {
        return;
    }
    users.sort_unstable_by_key(|u| u.index);
    let parts: Vec<(u64, u32)> = users
        .iter()
        .map(|u| u.slot.packed_parts().unwrap_or((1, 0)))
        .collect();
    debug_assert!(users.iter().all(|u| u.slot.packed_parts().is_some()));
    let seen_base = parts.iter().map(|p| p.0).min().unwrap_or(0);
    let gaps = users
        .windows(2)
        .map(|w| w[1].index.saturating_sub(w[0].index).saturating_sub(1));
    let k_gap = best_k(gaps.clone(), users.len().saturating_sub(1));
    let k_seen = best_k(parts.iter().map(|p| p.0 - seen_base), parts.len());
    put_varint(out, users[0].index);
    put_varint(out, seen_base);
    out.push(k_gap);
    out.push(k_seen);
    let mut bits = BitWriter::new(out);
    let mut gaps = gaps;
    let mut previous_tail = None;
    for (i, &(seen, tail)) in parts.iter().enumerate() {
        if i > 0 {
            bits.rice(gaps.next().unwrap_or(0), k_gap);
        }
        bits.rice(seen - seen_base, k_seen);
        if i > 0 {
            let same = previous_tail == Some(tail);
            bits.bits(u64::from(same), 1);
            if !same {
                bits.bits(u64::from(tail), TAIL_BITS);
            }
        } else {
            bits.bits(u64::from(tail), TAIL_BITS);
        }
        previous_tail = Some(tail);
    }
    bits.finish();
}

/// Decodes a group, handing each user to `each` in index order. `index_limit` bounds the
/// indices (the shard's dense length): an index at or past it, a slot no plain user can have,
/// a count the bytes cannot hold, or bytes left over is an error and nothing after it is
/// handed out.
pub fn decode(
    bytes: &[u8],
    index_limit: u64,
    mut each: impl FnMut(PackedUser),
) -> Result<usize, ImportError> {
    let mut at = 0;
    let count = get_varint(bytes, &mut at)?;
    if count == 0 {
        return if at == bytes.len() {
            Ok(0)
        } else {
            Err(bad("bytes after an empty packed group"))
        };
    }
    let mut index = get_varint(bytes, &mut at)?;
    let seen_base = get_varint(bytes, &mut at)?;
    let k_gap = get_u8(bytes, &mut at)?;
    let k_seen = get_u8(bytes, &mut at)?;
    if k_gap > K_MAX || k_seen > K_MAX {
        return Err(bad("packed group parameter"));
    }
    let payload = &bytes[at..];
    // Each user takes at least 1 bit of seen and 1 of tail (19 for the first): a count beyond
    // that is a lie, refused before anything is handed out.
    if count > (payload.len() as u64).saturating_mul(8) / 2 {
        return Err(bad("packed group count"));
    }
    let mut bits = BitReader::new(payload);
    let mut tail = 0u32;
    for i in 0..count {
        if i > 0 {
            let gap = bits.rice(k_gap)?;
            index = index
                .checked_add(gap)
                .and_then(|x| x.checked_add(1))
                .ok_or_else(|| bad("packed index"))?;
        }
        if index >= index_limit {
            return Err(ImportError(format!(
                "packed user at dense index {index}, past this shard's {index_limit}"
            )));
        }
        let seen = seen_base
            .checked_add(bits.rice(k_seen)?)
            .ok_or_else(|| bad("packed last-seen"))?;
        if i == 0 || bits.bits(1)? == 0 {
            tail = bits.bits(TAIL_BITS)? as u32;
        }
        let slot = Slot::from_packed_parts(seen, tail).ok_or_else(|| bad("packed slot"))?;
        each(PackedUser { index, slot });
    }
    if !bits.only_padding_left() {
        return Err(bad("bytes after a packed group"));
    }
    Ok(count as usize)
}

/// The Rice parameter that codes `values` (`n` of them) in the fewest bits: near log2 of their
/// mean, so the neighbours of that are tried and the cheapest kept.
fn best_k(values: impl Iterator<Item = u64> + Clone, n: usize) -> u8 {
    if n == 0 {
        return 0;
    }
    let sum: u128 = values.clone().map(u128::from).sum();
    let mean = (sum / n as u128).max(1) as u64;
    let guess = 63 - mean.leading_zeros() as u8;
    let mut best = (u64::MAX, guess);
    for k in guess.saturating_sub(2)..=(guess + 1).min(K_MAX) {
        let cost: u64 = values.clone().map(|v| rice_bits(v, k)).sum();
        if cost < best.0 {
            best = (cost, k);
        }
    }
    best.1
}

fn rice_bits(value: u64, k: u8) -> u64 {
    let q = value >> k;
    if q < ESCAPE_ONES {
        q + 1 + u64::from(k)
    } else {
        ESCAPE_ONES + 64
    }
}

fn bad(what: &str) -> ImportError {
    ImportError(format!("malformed {what}"))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, ImportError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = get_u8(bytes, at)?;
        let part = u64::from(byte & 0x7f);
        if shift == 63 && part > 1 {
            return Err(bad("varint"));
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint"))
}

fn get_u8(bytes: &[u8], at: &mut usize) -> Result<u8, ImportError> {
    let byte = *bytes
        .get(*at)
        .ok_or_else(|| ImportError(format!("packed group ends early at byte {at}")))?;
    *at += 1;
    Ok(byte)
}

/// Bits appended LSB first, a byte at a time.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    len: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            acc: 0,
            len: 0,
        }
    }

    /// The low `count` bits of `value` (`count` ≤ 64).
    fn bits(&mut self, value: u64, count: u32) {
        let mut value = if count == 64 {
            value
        } else {
            value & ((1u64 << count) - 1)
        };
        let mut count = count;
        while count > 0 {
            let room = 64 - self.len;
            let take = count.min(room);
            let part = if take == 64 {
                value
            } else {
                value & ((1u64 << take) - 1)
            };
            self.acc |= part << self.len;
            self.len += take;
            value = if take == 64 { 0 } else { value >> take };
            count -= take;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
    }

    fn ones(&mut self, mut count: u64) {
        while count > 0 {
            let take = count.min(32) as u32;
            self.bits((1u64 << take) - 1, take);
            count -= u64::from(take);
        }
    }

    fn rice(&mut self, value: u64, k: u8) {
        let q = value >> k;
        if q < ESCAPE_ONES {
            self.ones(q);
            self.bits(0, 1);
            self.bits(value, u32::from(k));
        } else {
            self.ones(ESCAPE_ONES);
            self.bits(value, 64);
        }
    }

    fn finish(self) {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    /// The next bit to read, counted from the start of `bytes`.
    at_bit: u64,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at_bit: 0 }
    }

    fn bit(&mut self) -> Result<u64, ImportError> {
        let byte = self
            .bytes
            .get((self.at_bit / 8) as usize)
            .ok_or_else(|| bad("packed group: ends early"))?;
        let bit = u64::from(byte >> (self.at_bit % 8)) & 1;
        self.at_bit += 1;
        Ok(bit)
    }

    /// `count` bits (≤ 64), LSB first.
    fn bits(&mut self, count: u32) -> Result<u64, ImportError> {
        let mut value = 0u64;
        let mut done = 0u32;
        while done < count {
            let byte_at = (self.at_bit / 8) as usize;
            let offset = (self.at_bit % 8) as u32;
            let byte = *self
                .bytes
                .get(byte_at)
                .ok_or_else(|| bad("packed group: ends early"))?;
            let take = (8 - offset).min(count - done);
            let part = (u64::from(byte) >> offset) & ((1u64 << take) - 1);
            value |= part << done;
            done += take;
            self.at_bit += u64::from(take);
        }
        Ok(value)
    }

    fn rice(&mut self, k: u8) -> Result<u64, ImportError> {
        let mut q = 0;
        while q < ESCAPE_ONES && self.bit()? == 1 {
            q += 1;
        }
        if q == ESCAPE_ONES {
            return self.bits(64);
        }
        let low = self.bits(u32::from(k))?;
        q.checked_shl(u32::from(k))
            .filter(|shifted| shifted >> k == q)
            .map(|shifted| shifted | low)
            .ok_or_else(|| bad("packed value"))
    }

    /// Whether what is left is the zero bits that round the group up to a byte.
    fn only_padding_left(&self) -> bool {
        let total = self.bytes.len() as u64 * 8;
        if total.saturating_sub(self.at_bit) >= 8 {
            return false;
        }
        (self.at_bit..total).all(|bit| {
            self.bytes
                .get((bit / 8) as usize)
                .is_some_and(|b| (b >> (bit % 8)) & 1 == 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_796_000_000_000;

    fn user(index: u64, seen_ms: u64, ttl_s: u64) -> PackedUser {
        PackedUser {
            index,
            slot: Slot::new(seen_ms, ttl_s, false),
        }
    }

    fn round_trip(users: &[PackedUser]) -> (Vec<PackedUser>, usize) {
        let mut input = users.to_vec();
        let mut out = Vec::new();
        encode(&mut input, &mut out);
        let mut back = Vec::new();
        let count = decode(&out, u64::MAX, |u| back.push(u)).expect("decodes");
        assert_eq!(count, users.len());
        (back, out.len())
    }

    #[test]
    fn round_trips_in_index_order() {
        let mut users = vec![
            user(9, NOW_MS + 3, 30),
            user(2, NOW_MS, 30),
            user(700_000, NOW_MS + 1, 30),
            user(3, NOW_MS - 30_000, 0),
            PackedUser {
                index: 5,
                slot: Slot::new(NOW_MS, 45, false).with_app_status(super::super::AppStatus::Dnd),
            },
        ];
        let (back, _) = round_trip(&users);
        users.sort_by_key(|u| u.index);
        assert_eq!(back, users);
        assert_eq!(round_trip(&[]).0, vec![]);
        assert_eq!(
            round_trip(&[user(0, NOW_MS, 1)]).0,
            vec![user(0, NOW_MS, 1)]
        );
        // Extremes: the largest index, a last-seen far from the base, the largest TTL.
        let far = [
            user(u64::MAX - 1, NOW_MS, super::super::slot::SLOT_TTL_S_MAX),
            user(0, crate::store::slot::EPOCH_MS + 1, 0),
        ];
        let (back, _) = round_trip(&far);
        assert_eq!(back.len(), 2);
        assert_eq!(back[1], far[0]);
    }

    /// What the stream is for: a drain of heartbeats among a million users costs a few bytes
    /// per user, not 18.
    #[test]
    fn a_drain_of_heartbeats_is_a_few_bytes_per_user() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut users: Vec<PackedUser> = (0..500)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                user(state % 1_000_000, NOW_MS + state % 2, 30)
            })
            .collect();
        users.sort_by_key(|u| u.index);
        users.dedup_by_key(|u| u.index);
        let (back, bytes) = round_trip(&users);
        assert_eq!(back, users);
        let per_user = bytes as f64 / users.len() as f64;
        assert!(per_user < 2.5, "{per_user} bytes per user");
    }

    #[test]
    fn refuses_what_it_did_not_write() {
        let users = [user(10, NOW_MS, 30), user(20, NOW_MS + 1, 30)];
        let mut input = users.to_vec();
        let mut good = Vec::new();
        encode(&mut input, &mut good);
        // An index past the shard.
        assert!(decode(&good, 15, |_| {}).is_err());
        // Truncated anywhere: an error, never a panic; a trailing byte: an error.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], u64::MAX, |_| {}).is_err(), "cut {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer, u64::MAX, |_| {}).is_err());
        // A count the bytes cannot hold is refused before anything is handed out.
        let mut lying = vec![0xff, 0xff, 0xff, 0x0f];
        lying.extend_from_slice(&good[1..]);
        let mut handed = 0;
        assert!(decode(&lying, u64::MAX, |_| handed += 1).is_err());
        assert_eq!(handed, 0);
        // Every single-bit flip decodes or errors; none panics.
        for bit in 0..good.len() * 8 {
            let mut flipped = good.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let _ = decode(&flipped, u64::MAX, |_| {});
        }
        // A Rice parameter beyond 63: count 1, index 0, base 1, k_gap 64.
        assert!(decode(&[1, 0, 1, 64, 0, 0, 0, 0], u64::MAX, |_| {}).is_err());
    }
}
