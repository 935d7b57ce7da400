//! The fuzz targets. Each is a plain function of the input's bytes that panics when an
//! invariant breaks, so that it can also be wrapped by cargo-fuzz/libFuzzer
//! (`fuzz_target!(|data: &[u8]| { presenced_fuzz::targets::decoder::check(data); })`). It
//! returns a coarse label of the outcome, which the runner counts ("distinct outcomes") and
//! uses as feedback: an input with a label not seen before joins the corpus.

pub mod decoder;
pub mod inline;
pub mod snapshot;

use crate::mutate::{MutateFn, generic};

pub struct Target {
    pub name: &'static str,
    /// Subdirectory of `fuzz/corpus/` holding the seeds.
    pub corpus: &'static str,
    pub run: fn(&[u8]) -> String,
    /// Mutated inputs are cut to this length: past every limit the target has (the 64 KiB
    /// inline and header limits), small enough to keep iterations fast.
    pub max_len: usize,
    pub dictionary: &'static [&'static [u8]],
    pub mutate: MutateFn,
}

const RESP_TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"*",
    b"$",
    b"*1\r\n",
    b"*2\r\n",
    b"*0\r\n",
    b"*-1\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"$4\r\nPING\r\n",
    b"$3\r\nSET\r\n",
    b"\"",
    b"'",
    b"\\x",
    b"\\",
    b" ",
    b":",
    b"+",
    b"-",
    b"AUTH",
    b"PING\r\n",
];

const INLINE_TOKENS: &[&[u8]] = &[
    b"\"", b"'", b"\\", b"\\x", b"\\x4", b"\\x41", b"\\xff", b"\\xg0", b" ", b"\t", b"\x0b",
    b"\x0c", b"\r", b"\n", b"\0", b"\\'", b"\\\"", b"\\n", b"\\r", b"\\a", b"\\b", b"\"\"", b"''",
    b"\" \"",
];

const SNAPSHOT_TOKENS: &[&[u8]] = &[
    b"PRESNAP\0",
    b"PRESNAPE",
    b"D",
    b"S",
    b"X",
    b"T",
    b"\x00\x20\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x01\x00",
    b"\x00\x01",
    b"{id}",
];

pub const TARGETS: &[Target] = &[
    Target {
        name: "decoder",
        corpus: "decoder",
        run: decoder::check,
        max_len: 140_000,
        dictionary: RESP_TOKENS,
        mutate: generic,
    },
    Target {
        name: "inline",
        corpus: "inline",
        run: inline::check,
        max_len: 70_000,
        dictionary: INLINE_TOKENS,
        mutate: generic,
    },
    Target {
        name: "snapshot",
        corpus: "snapshot",
        run: snapshot::check,
        max_len: 64 * 1024,
        dictionary: SNAPSHOT_TOKENS,
        mutate: generic,
    },
    Target {
        name: "snapshot-crc",
        corpus: "snapshot",
        run: snapshot::check_fixed_crcs,
        max_len: 64 * 1024,
        dictionary: SNAPSHOT_TOKENS,
        mutate: snapshot::mutate_structured,
    },
];

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
