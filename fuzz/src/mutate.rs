//! Byte-level mutations of corpus entries, in the spirit of libFuzzer's and AFL's: bit flips,
//! byte sets, inserted and deleted runs, duplicated chunks, splices of two entries,
//! "interesting" integers written as ASCII decimals (RESP lengths) and little-endian (snapshot
//! fields), small arithmetic on little-endian fields, truncation and per-target dictionary
//! tokens. Several are stacked on one input, as those fuzzers do.

use crate::rng::Rng;

/// Decimal spellings that sit on the decoder's and the store's edges: signs, zero, i32/i64/u32
/// boundaries, the 512 MB bulk limit, 1 MiB, the 64 KiB inline limit, the unauthenticated
/// limits (10 arguments, 16 KiB), leading zeros.
const ASCII_INTEGERS: &[&[u8]] = &[
    b"0",
    b"-0",
    b"1",
    b"-1",
    b"-2",
    b"2",
    b"3",
    b"00",
    b"01",
    b"10",
    b"11",
    b"16384",
    b"16385",
    b"65535",
    b"65536",
    b"65537",
    b"1048576",
    b"1048577",
    b"536870912",
    b"536870913",
    b"2147483647",
    b"2147483648",
    b"-2147483648",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
];

/// Little-endian values on the snapshot format's edges: 0, 1, all ones at each width, sign
/// bits, the chunk size, lengths just past limits, and values that overflow a multiplication
/// by 8 or by `CHUNK_SLOTS`.
const LE_INTEGERS: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x101,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    8192,
    8191,
    8193,
    65_536,
    257,
    256,
    1024,
    512,
    511,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 29,
    (1 << 29) + 1,
    1 << 60,
    1 << 61,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 1,
    u64::MAX,
];

/// Bytes that mean something to the decoder, the splitter or the snapshot reader.
const INTERESTING_BYTES: &[u8] = &[
    0, 0xff, 0x7f, 0x80, b'\r', b'\n', b'*', b'$', b'"', b'\'', b'\\', b' ', b'\t', 0x0b, 0x0c,
    b'-', b'0', b'1', b'9', b'x', b'D', b'S', b'X', b'T',
];

pub struct Mutator {
    pub max_len: usize,
    pub dictionary: &'static [&'static [u8]],
}

impl Mutator {
    /// Applies 1, 2, 4 or 8 mutations to `input`; `corpus` supplies splice partners.
    pub fn mutate(&self, rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let rounds = 1 << rng.below(4);
        for _ in 0..rounds {
            self.mutate_once(rng, input, corpus);
        }
        input.truncate(self.max_len);
    }

    fn mutate_once(&self, rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        match rng.below(15) {
            0 if !input.is_empty() => {
                let at = rng.below(input.len());
                input[at] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let at = rng.below(input.len());
                input[at] = rng.byte();
            }
            2 if !input.is_empty() => {
                let at = rng.below(input.len());
                input[at] = *rng.pick(INTERESTING_BYTES);
            }
            3 => {
                let len = rng.range(1, 16);
                let bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
                insert(input, rng, &bytes);
            }
            4 => {
                // A repeated byte; now and then long enough to cross the 64 KiB inline and
                // header limits, so those error paths are reached without a seed of that size.
                let len = if rng.one_in(32) {
                    rng.range(60_000, 70_000).min(self.max_len)
                } else {
                    rng.range(1, 256)
                };
                let byte = if rng.one_in(2) {
                    *rng.pick(INTERESTING_BYTES)
                } else {
                    rng.byte()
                };
                insert(input, rng, &vec![byte; len]);
            }
            5 if !input.is_empty() => {
                let at = rng.below(input.len());
                let len = rng.range(1, (input.len() - at).min(64));
                input.drain(at..at + len);
            }
            6 if !input.is_empty() => {
                let (start, len) = span(rng, input.len(), 256);
                let chunk = input[start..start + len].to_vec();
                let copies = if rng.one_in(8) { rng.range(2, 64) } else { 1 };
                insert(input, rng, &chunk.repeat(copies));
            }
            7 if !corpus.is_empty() => {
                let other = rng.pick(corpus);
                let cut = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            8 => self.ascii_integer(rng, input),
            9 if !input.is_empty() => {
                let width = *rng.pick(&[1usize, 2, 4, 8]);
                let value = *rng.pick(LE_INTEGERS);
                let value = if rng.one_in(4) { !value } else { value };
                overwrite_le(input, rng, width, value);
            }
            10 if !input.is_empty() => {
                let width = *rng.pick(&[1usize, 2, 4, 8]);
                let at = rng.below(input.len());
                let end = (at + width).min(input.len());
                let mut raw = [0u8; 8];
                raw[..end - at].copy_from_slice(&input[at..end]);
                let delta = rng.range(1, 35) as u64;
                let value = u64::from_le_bytes(raw);
                let value = if rng.one_in(2) {
                    value.wrapping_add(delta)
                } else {
                    value.wrapping_sub(delta)
                };
                input[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
            }
            11 if !input.is_empty() => {
                let len = rng.below(input.len());
                input.truncate(len);
            }
            12 if !self.dictionary.is_empty() => {
                let token = *rng.pick(self.dictionary);
                if rng.one_in(2) || input.len() < token.len() {
                    insert(input, rng, token);
                } else {
                    let at = rng.below(input.len() - token.len() + 1);
                    input[at..at + token.len()].copy_from_slice(token);
                }
            }
            13 if input.len() > 1 => {
                let (from, len) = span(rng, input.len(), 64);
                let to = rng.below(input.len() - len + 1);
                input.copy_within(from..from + len, to);
            }
            _ => {
                // Fewer bytes than a mutation needs: grow instead.
                let byte = rng.byte();
                insert(input, rng, &[byte]);
            }
        }
    }

    /// Replaces a run of ASCII digits (or inserts at a random point) with an edge-case decimal.
    fn ascii_integer(&self, rng: &mut Rng, input: &mut Vec<u8>) {
        let number = *rng.pick(ASCII_INTEGERS);
        let digits: Vec<usize> = input
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_digit() || **b == b'-')
            .map(|(i, _)| i)
            .collect();
        if digits.is_empty() || rng.one_in(4) {
            insert(input, rng, number);
            return;
        }
        let start = *rng.pick(&digits);
        let mut end = start + 1;
        while end < input.len() && input[end].is_ascii_digit() {
            end += 1;
        }
        input.splice(start..end, number.iter().copied());
    }
}

/// How a target's inputs are mutated: `generic` for most, a structure-aware one where framing
/// would otherwise stop most mutations at the first check.
pub type MutateFn = fn(&Mutator, &mut Rng, &mut Vec<u8>, &[Vec<u8>]);

pub fn generic(mutator: &Mutator, rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    mutator.mutate(rng, input, corpus);
}

fn insert(input: &mut Vec<u8>, rng: &mut Rng, bytes: &[u8]) {
    let at = rng.below(input.len() + 1);
    input.splice(at..at, bytes.iter().copied());
}

/// A random non-empty range of at most `max` bytes inside `len` bytes (`len` > 0).
fn span(rng: &mut Rng, len: usize, max: usize) -> (usize, usize) {
    let start = rng.below(len);
    let span = rng.range(1, (len - start).min(max));
    (start, span)
}

fn overwrite_le(input: &mut [u8], rng: &mut Rng, width: usize, value: u64) {
    let at = rng.below(input.len());
    let end = (at + width).min(input.len());
    input[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mutation keeps the length bound, and stacked mutations do change inputs.
    #[test]
    fn mutations_respect_max_len_and_change_inputs() {
        let mutator = Mutator {
            max_len: 300,
            dictionary: &[b"\r\n", b"*1\r\n"],
        };
        let corpus = vec![b"*1\r\n$4\r\nPING\r\n".to_vec(), Vec::new()];
        let mut rng = Rng::new(42);
        let mut changed = 0;
        for i in 0..20_000 {
            let mut input = corpus[i % 2].clone();
            mutator.mutate(&mut rng, &mut input, &corpus);
            assert!(input.len() <= 300);
            if input != corpus[i % 2] {
                changed += 1;
            }
        }
        assert!(changed > 18_000, "only {changed} of 20,000 inputs changed");
    }
}
