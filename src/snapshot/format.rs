//! The snapshot file format, version 1. `docs/design/snapshot-format.md` is its description;
//! this module holds the constants and the fixed-size pieces, and is the only code that knows
//! byte offsets.
//!
//! ```text
//! header  magic "PRESNAP\0" | version u32 | header_len u32 | created_ms u64 | capacity u64
//!         | shard_count u32 | chunk_slots u32 | key_pattern_len u16 | key_pattern | crc u32
//! record  tag u8 ('D' dense chunk, 'S' side table, 'X' extras) | shard u32 | index u64
//!         | payload_len u64 | payload_crc u32 | payload
//! trailer tag u8 'T' | record_count u64 | body_crc u32 | magic "PRESNAPE"
//! ```
//! All integers little-endian. `body_crc` covers every byte before the trailer.

pub const MAGIC: &[u8; 8] = b"PRESNAP\0";
pub const END_MAGIC: &[u8; 8] = b"PRESNAPE";
pub const VERSION: u32 = 2;

/// The oldest version this build still reads: version 1 has no replication mark.
pub const VERSION_MIN: u32 = 1;

pub const TAG_DENSE: u8 = b'D';
pub const TAG_SIDE: u8 = b'S';
pub const TAG_EXTRAS: u8 = b'X';
pub const TAG_TRAILER: u8 = b'T';

/// tag + shard + index + payload_len + payload_crc.
pub const RECORD_HEADER_LEN: usize = 1 + 4 + 8 + 8 + 4;
/// tag + record_count + body_crc + end magic.
pub const TRAILER_LEN: usize = 1 + 8 + 4 + 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub created_ms: u64,
    pub capacity: u64,
    pub shard_count: u32,
    pub chunk_slots: u32,
    pub key_pattern: String,
    /// Where the saving process stood in a replication stream (version 2): a follower
    /// restarted from this file continues from that offset instead of a full sync.
    pub replication: Option<ReplicationMark>,
}

/// A replication ID (40 hexadecimal characters) and the stream offset the state is at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationMark {
    pub replid: String,
    pub offset: u64,
}

/// Bytes of a replication ID.
pub const REPLID_LEN: usize = 40;

impl Header {
    pub fn encoded_len(&self) -> usize {
        let mark = 1 + self.replication.as_ref().map_or(0, |_| REPLID_LEN + 8);
        8 + 4 + 4 + 8 + 8 + 4 + 4 + 2 + self.key_pattern.len() + mark + 4
    }

    pub fn encode(&self, out: &mut [u8]) {
        let len = self.encoded_len();
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(MAGIC);
        put(&VERSION.to_le_bytes());
        put(&(len as u32).to_le_bytes());
        put(&self.created_ms.to_le_bytes());
        put(&self.capacity.to_le_bytes());
        put(&self.shard_count.to_le_bytes());
        put(&self.chunk_slots.to_le_bytes());
        put(&(self.key_pattern.len() as u16).to_le_bytes());
        put(self.key_pattern.as_bytes());
        match &self.replication {
            None => put(&[0]),
            Some(mark) => {
                put(&[1]);
                // `replication` writes 40 ASCII hex characters; anything else is padded or cut
                // so the layout holds, and will not match any leader's ID.
                let mut id = [b'0'; REPLID_LEN];
                let given = mark.replid.as_bytes();
                id[..given.len().min(REPLID_LEN)]
                    .copy_from_slice(&given[..given.len().min(REPLID_LEN)]);
                put(&id);
                put(&mark.offset.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out[..len - 4]);
        out[len - 4..len].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and verifies a header; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<(Header, usize), String> {
        let fixed = 8 + 4 + 4;
        if bytes.len() < fixed {
            return Err(format!(
                "file is {} bytes, shorter than a header",
                bytes.len()
            ));
        }
        if &bytes[..8] != MAGIC {
            return Err("bad magic: not a presenced snapshot".to_string());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| "version")?);
        if !(VERSION_MIN..=VERSION).contains(&version) {
            return Err(format!(
                "format version {version}, this build reads {VERSION_MIN} to {VERSION}"
            ));
        }
        let len = u32::from_le_bytes(bytes[12..16].try_into().map_err(|_| "length")?) as usize;
        if len < fixed + 8 + 8 + 4 + 4 + 2 + 4 || len > bytes.len() || len > 64 * 1024 {
            return Err(format!("header length {len} is impossible"));
        }
        let crc = u32::from_le_bytes(bytes[len - 4..len].try_into().map_err(|_| "crc")?);
        if crc32fast::hash(&bytes[..len - 4]) != crc {
            return Err("CRC mismatch".to_string());
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let pattern_len =
            u16::from_le_bytes(bytes[40..42].try_into().map_err(|_| "pattern")?) as usize;
        let after_pattern = 42 + pattern_len;
        let replication = if version >= 2 {
            match bytes.get(after_pattern) {
                Some(0) => None,
                Some(1) if after_pattern + 1 + REPLID_LEN + 8 + 4 <= len => {
                    let id = &bytes[after_pattern + 1..after_pattern + 1 + REPLID_LEN];
                    if !id.iter().all(u8::is_ascii_hexdigit) {
                        return Err("replication id is not 40 hexadecimal characters".to_string());
                    }
                    let at = after_pattern + 1 + REPLID_LEN;
                    Some(ReplicationMark {
                        replid: String::from_utf8_lossy(id).into_owned(),
                        offset: u64::from_le_bytes(
                            bytes[at..at + 8].try_into().map_err(|_| "offset")?,
                        ),
                    })
                }
                _ => return Err("bad replication mark".to_string()),
            }
        } else {
            None
        };
        let mark_len = match (version, &replication) {
            (1, _) => 0,
            (_, None) => 1,
            (_, Some(_)) => 1 + REPLID_LEN + 8,
        };
        if after_pattern + mark_len + 4 != len {
            return Err("key pattern length does not match the header length".to_string());
        }
        // Writers store a `String`; a pattern that is not UTF-8 is damage the CRC missed (or a
        // foreign writer). Decoding it lossily would change its length, and `encoded_len`
        // would then disagree with where the records start.
        let key_pattern = String::from_utf8(bytes[42..42 + pattern_len].to_vec())
            .map_err(|_| "key pattern is not UTF-8".to_string())?;
        let header = Header {
            created_ms: u64_at(16),
            capacity: u64_at(24),
            shard_count: u32_at(32),
            chunk_slots: u32_at(36),
            key_pattern,
            replication,
        };
        Ok((header, len))
    }
}

/// A record's fixed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub tag: u8,
    pub shard: u32,
    pub index: u64,
    pub payload_len: u64,
    pub payload_crc: u32,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut out = [0u8; RECORD_HEADER_LEN];
        out[0] = self.tag;
        out[1..5].copy_from_slice(&self.shard.to_le_bytes());
        out[5..13].copy_from_slice(&self.index.to_le_bytes());
        out[13..21].copy_from_slice(&self.payload_len.to_le_bytes());
        out[21..25].copy_from_slice(&self.payload_crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; RECORD_HEADER_LEN]) -> RecordHeader {
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        RecordHeader {
            tag: bytes[0],
            shard: u32_at(1),
            index: u64_at(5),
            payload_len: u64_at(13),
            payload_crc: u32_at(21),
        }
    }

    /// How a record is named in errors.
    pub fn region(&self) -> String {
        match self.tag {
            TAG_DENSE => format!("dense chunk {} of shard {}", self.index, self.shard),
            TAG_SIDE => format!("side table of shard {}", self.shard),
            TAG_EXTRAS => format!("extras table of shard {}", self.shard),
            tag => format!("record with unknown tag {tag:#04x}"),
        }
    }
}

pub fn encode_trailer(record_count: u64, body_crc: u32) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[0] = TAG_TRAILER;
    out[1..9].copy_from_slice(&record_count.to_le_bytes());
    out[9..13].copy_from_slice(&body_crc.to_le_bytes());
    out[13..21].copy_from_slice(END_MAGIC);
    out
}

/// (record_count, body_crc) of a well-formed trailer.
pub fn decode_trailer(bytes: &[u8; TRAILER_LEN]) -> Result<(u64, u32), String> {
    if bytes[0] != TAG_TRAILER || &bytes[13..21] != END_MAGIC {
        return Err("missing or damaged trailer (truncated file?)".to_string());
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&bytes[1..9]);
    let crc = u32::from_le_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
    Ok((u64::from_le_bytes(count), crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let header = Header {
            created_ms: 1_795_000_000_000,
            capacity: 1 << 32,
            shard_count: 2,
            chunk_slots: 8192,
            key_pattern: "user:{id}:presence".to_string(),
            replication: None,
        };
        let marked = Header {
            replication: Some(ReplicationMark {
                replid: "f1ad62a5b2b6bbf7fe34f6bf81a1d6cc28dbf687".to_string(),
                offset: 6449,
            }),
            ..header.clone()
        };
        for header in [header, marked] {
            let mut bytes = vec![0u8; header.encoded_len()];
            header.encode(&mut bytes);
            assert_eq!(Header::decode(&bytes), Ok((header.clone(), bytes.len())));
            for at in 0..bytes.len() {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x40;
                assert!(Header::decode(&damaged).is_err(), "byte {at}");
            }
        }
        let r = RecordHeader {
            tag: TAG_DENSE,
            shard: 1,
            index: 7,
            payload_len: 65536,
            payload_crc: 42,
        };
        assert_eq!(RecordHeader::decode(&r.encode()), r);
        assert_eq!(decode_trailer(&encode_trailer(9, 77)), Ok((9, 77)));
    }

    /// A key pattern that is not UTF-8 is refused even under a valid CRC (found by the
    /// snapshot-crc fuzz target: decoded lossily, its length no longer matched the header's).
    #[test]
    fn non_utf8_key_pattern_is_refused() {
        let header = Header {
            created_ms: 1,
            capacity: 1024,
            shard_count: 2,
            chunk_slots: 8192,
            key_pattern: "user:{id}".to_string(),
            replication: None,
        };
        let mut bytes = vec![0u8; header.encoded_len()];
        header.encode(&mut bytes);
        bytes[42] = 0xf5;
        let len = bytes.len();
        let crc = crc32fast::hash(&bytes[..len - 4]);
        bytes[len - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Header::decode(&bytes),
            Err("key pattern is not UTF-8".to_string())
        );
    }

    /// A version-1 header (no replication mark: what earlier builds wrote) still reads.
    #[test]
    fn version_one_headers_still_read() {
        let header = Header {
            created_ms: 5,
            capacity: 1024,
            shard_count: 1,
            chunk_slots: 8192,
            key_pattern: "{id}".to_string(),
            replication: None,
        };
        let mut v2 = vec![0u8; header.encoded_len()];
        header.encode(&mut v2);
        // Version 1: the same fields without the mark's flag byte.
        let mut v1 = v2[..v2.len() - 5].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let len = (v1.len() + 4) as u32;
        v1[12..16].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(Header::decode(&v1), Ok((header, v1.len())));
    }
}
