//! Scenarios and their pre-encoded request pools. Everything here runs before the clock starts:
//! the measurement loop only copies these bytes to sockets.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Presenced,
    Redis,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "presenced" => Ok(Target::Presenced),
            "redis" => Ok(Target::Redis),
            _ => Err(format!("unknown target '{s}': presenced or redis")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Presenced => "presenced",
            Target::Redis => "redis",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `PING` as a RESP array (both targets).
    Ping,
    /// `PING\r\n` as an inline command (both targets).
    PingInline,
    /// presenced `HEARTBEAT id`; redis `SET user:id:presence online EX 30`.
    Heartbeat,
    /// presenced `MHEARTBEAT` of B ids; redis B `SET ... EX 30` back to back, one operation.
    BatchHeartbeat,
    /// presenced `MSTATUS` of B ids; redis `MGET` of B keys.
    Lookup,
    /// The same stream to either target: 90% `SET ... EX 30`, 10% `MGET` of B keys.
    Dropin,
    /// Every id of 0..U once, in order: presenced `MHEARTBEAT` of B; redis `SET ... EX 30`.
    Populate,
}

pub const SCENARIOS: &str =
    "ping, ping-inline, heartbeat, batch-heartbeat, lookup, dropin, populate";

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ping" => Scenario::Ping,
            "ping-inline" => Scenario::PingInline,
            "heartbeat" => Scenario::Heartbeat,
            "batch-heartbeat" => Scenario::BatchHeartbeat,
            "lookup" => Scenario::Lookup,
            "dropin" => Scenario::Dropin,
            "populate" => Scenario::Populate,
            _ => return Err(format!("unknown scenario '{s}': one of {SCENARIOS}")),
        })
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scenario::Ping => "ping",
            Scenario::PingInline => "ping-inline",
            Scenario::Heartbeat => "heartbeat",
            Scenario::BatchHeartbeat => "batch-heartbeat",
            Scenario::Lookup => "lookup",
            Scenario::Dropin => "dropin",
            Scenario::Populate => "populate",
        })
    }
}

/// The `EX` of every `SET` sent to Redis (`--ttl-s`, default 30): memory runs use a long one
/// so keys do not expire while the store is being filled.
pub static SET_TTL_S: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(30);

/// xorshift64* (Vigna): a few cycles per number, plenty for spreading user IDs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that seeds 0, 1, 2 give unrelated streams and never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 1 } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, n)` (multiply-shift; the bias is below 2^-32 for any n < 2^32).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// One pre-encoded operation's bookkeeping. An operation is what `--pipeline` counts and what
/// latency is measured for: one request, or for redis `batch-heartbeat` B SETs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpMeta {
    /// Byte offset of the operation's end in `Pool::bytes` (its start is the previous end).
    pub end: u32,
    /// Top-level replies that complete it.
    pub replies: u32,
    /// Users it touches.
    pub users: u32,
}

/// Pre-encoded operations, back to back.
#[derive(Debug, Default)]
pub struct Pool {
    pub bytes: Vec<u8>,
    pub ops: Vec<OpMeta>,
}

impl Pool {
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn op(&self, i: usize) -> (&[u8], OpMeta) {
        let start = if i == 0 {
            0
        } else {
            self.ops[i - 1].end as usize
        };
        let m = self.ops[i];
        (&self.bytes[start..m.end as usize], m)
    }

    fn finish_op(&mut self, replies: u32, users: u32) {
        let end = u32::try_from(self.bytes.len()).expect("pool segment under 4 GiB");
        self.ops.push(OpMeta {
            end,
            replies,
            users,
        });
    }
}

/// Writes RESP commands into a pool without allocating per argument.
struct Enc<'a> {
    out: &'a mut Vec<u8>,
}

impl Enc<'_> {
    fn array(&mut self, n: usize) {
        self.out.push(b'*');
        push_u64(self.out, n as u64);
        self.out.extend_from_slice(b"\r\n");
    }

    fn bulk(&mut self, s: &[u8]) {
        self.out.push(b'$');
        push_u64(self.out, s.len() as u64);
        self.out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(s);
        self.out.extend_from_slice(b"\r\n");
    }

    fn id(&mut self, id: u64) {
        let mut buf = [0u8; 20];
        let d = digits(id, &mut buf);
        self.bulk(d);
    }

    fn key(&mut self, id: u64) {
        let mut buf = [0u8; 20];
        let d = digits(id, &mut buf);
        let mut key = [0u8; 48];
        let len = 5 + d.len() + 9;
        key[..5].copy_from_slice(b"user:");
        key[5..5 + d.len()].copy_from_slice(d);
        key[5 + d.len()..len].copy_from_slice(b":presence");
        self.bulk(&key[..len]);
    }

    fn set_presence(&mut self, id: u64) {
        self.array(5);
        self.bulk(b"SET");
        self.key(id);
        self.bulk(b"online");
        self.bulk(b"EX");
        let mut buf = [0u8; 20];
        let ttl = digits(
            SET_TTL_S.load(std::sync::atomic::Ordering::Relaxed),
            &mut buf,
        );
        self.bulk(ttl);
    }
}

fn digits(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(digits(v, &mut buf));
}

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub scenario: Scenario,
    pub target: Target,
    pub users: u64,
    pub batch: u32,
}

impl Params {
    /// Encodes one operation. `ids` yields the user IDs it names.
    fn encode_op(&self, pool: &mut Pool, ids: &mut dyn FnMut() -> u64, dropin_mget: bool) {
        let b = self.batch as usize;
        let mut e = Enc {
            out: &mut pool.bytes,
        };
        let (replies, users) = match (self.scenario, self.target) {
            (Scenario::Ping, _) => {
                e.array(1);
                e.bulk(b"PING");
                (1, 0)
            }
            (Scenario::PingInline, _) => {
                e.out.extend_from_slice(b"PING\r\n");
                (1, 0)
            }
            (Scenario::Heartbeat, Target::Presenced) => {
                e.array(2);
                e.bulk(b"HEARTBEAT");
                e.id(ids());
                (1, 1)
            }
            (Scenario::Heartbeat, Target::Redis) => {
                e.set_presence(ids());
                (1, 1)
            }
            (Scenario::BatchHeartbeat | Scenario::Populate, Target::Presenced) => {
                e.array(1 + b);
                e.bulk(b"MHEARTBEAT");
                for _ in 0..b {
                    e.id(ids());
                }
                (1, self.batch)
            }
            (Scenario::BatchHeartbeat, Target::Redis) => {
                for _ in 0..b {
                    e.set_presence(ids());
                }
                (self.batch, self.batch)
            }
            (Scenario::Populate, Target::Redis) => {
                e.set_presence(ids());
                (1, 1)
            }
            (Scenario::Lookup, Target::Presenced) => {
                e.array(1 + b);
                e.bulk(b"MSTATUS");
                for _ in 0..b {
                    e.id(ids());
                }
                (1, self.batch)
            }
            (Scenario::Lookup, Target::Redis) => {
                e.array(1 + b);
                e.bulk(b"MGET");
                for _ in 0..b {
                    e.key(ids());
                }
                (1, self.batch)
            }
            (Scenario::Dropin, _) => {
                if dropin_mget {
                    e.array(1 + b);
                    e.bulk(b"MGET");
                    for _ in 0..b {
                        e.key(ids());
                    }
                    (1, self.batch)
                } else {
                    e.set_presence(ids());
                    (1, 1)
                }
            }
        };
        pool.finish_op(replies, users);
    }

    /// A pool of up to `max_ops` random operations, stopping early past `max_bytes`.
    pub fn random_pool(&self, seed: u64, max_ops: usize, max_bytes: usize) -> Pool {
        let mut rng = Rng::new(seed);
        let mut id_rng = Rng::new(seed ^ 0x5DEE_CE66_D1CE_4E5B);
        let users = self.users;
        let mut pool = Pool::default();
        while pool.len() < max_ops.max(1) {
            let mget = rng.below(10) == 0;
            self.encode_op(&mut pool, &mut || id_rng.below(users), mget);
            if pool.bytes.len() >= max_bytes {
                break;
            }
        }
        pool
    }

    /// Operations of the populate stream naming ids `lo..hi`: as many ids as fit in about
    /// `max_bytes`, starting at `*next` (advanced past what was encoded).
    pub fn populate_segment(&self, next: &mut u64, hi: u64, max_bytes: usize) -> Pool {
        let mut pool = Pool::default();
        let per_op = match self.target {
            Target::Presenced => u64::from(self.batch),
            Target::Redis => 1,
        };
        while *next < hi && pool.bytes.len() < max_bytes {
            let n = per_op.min(hi - *next);
            let mut p = *self;
            p.batch = n as u32;
            let mut id = *next;
            p.encode_op(
                &mut pool,
                &mut || {
                    id += 1;
                    id - 1
                },
                false,
            );
            *next += n;
        }
        pool
    }

    /// How many operations the populate stream of ids `lo..hi` has.
    pub fn populate_ops(&self, lo: u64, hi: u64) -> u64 {
        match self.target {
            Target::Presenced => (hi - lo).div_ceil(u64::from(self.batch)),
            Target::Redis => hi - lo,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::skim::Skimmer;

    /// Splits a pool op into its commands (each a RESP array of bulk strings).
    fn commands(mut bytes: &[u8]) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let text = std::str::from_utf8(bytes).unwrap();
            let mut lines = text.split("\r\n");
            let n: usize = lines.next().unwrap()[1..].parse().unwrap();
            let mut args = Vec::new();
            let mut used = text.find("\r\n").unwrap() + 2;
            for _ in 0..n {
                let hdr = lines.next().unwrap();
                let len: usize = hdr[1..].parse().unwrap();
                let arg = lines.next().unwrap();
                assert_eq!(arg.len(), len);
                args.push(arg.to_string());
                used += hdr.len() + 2 + len + 2;
            }
            out.push(args);
            bytes = &bytes[used..];
        }
        out
    }

    fn params(scenario: Scenario, target: Target) -> Params {
        Params {
            scenario,
            target,
            users: 1000,
            batch: 3,
        }
    }

    #[test]
    fn ops_are_well_formed_resp() {
        for scenario in [
            Scenario::Ping,
            Scenario::Heartbeat,
            Scenario::BatchHeartbeat,
            Scenario::Lookup,
            Scenario::Dropin,
        ] {
            for target in [Target::Presenced, Target::Redis] {
                let pool = params(scenario, target).random_pool(7, 200, usize::MAX);
                assert_eq!(pool.len(), 200);
                // Each op parses as `replies` complete commands (the skimmer reads requests too).
                for i in 0..pool.len() {
                    let (bytes, meta) = pool.op(i);
                    let mut s = Skimmer::new();
                    let c = s.feed(bytes).unwrap();
                    assert_eq!(c.replies, u64::from(meta.replies), "{scenario} {target}");
                    assert!(s.at_boundary());
                }
            }
        }
    }

    #[test]
    fn commands_per_scenario() {
        let p = params(Scenario::Heartbeat, Target::Presenced).random_pool(1, 1, usize::MAX);
        let c = commands(p.op(0).0);
        assert_eq!(c[0][0], "HEARTBEAT");
        assert!(c[0][1].parse::<u64>().unwrap() < 1000);

        let p = params(Scenario::Heartbeat, Target::Redis).random_pool(1, 1, usize::MAX);
        let c = commands(p.op(0).0);
        assert_eq!(c[0][0], "SET");
        assert!(c[0][1].starts_with("user:") && c[0][1].ends_with(":presence"));
        assert_eq!(&c[0][2..], ["online", "EX", "30"]);

        let p = params(Scenario::BatchHeartbeat, Target::Redis).random_pool(1, 1, usize::MAX);
        let c = commands(p.op(0).0);
        assert_eq!(c.len(), 3);
        assert_eq!(p.ops[0].replies, 3);
        assert_eq!(p.ops[0].users, 3);

        let p = params(Scenario::BatchHeartbeat, Target::Presenced).random_pool(1, 1, usize::MAX);
        let c = commands(p.op(0).0);
        assert_eq!(
            (c.len(), c[0].len(), c[0][0].as_str()),
            (1, 4, "MHEARTBEAT")
        );

        let p = params(Scenario::Lookup, Target::Presenced).random_pool(1, 1, usize::MAX);
        assert_eq!(commands(p.op(0).0)[0][0], "MSTATUS");
        let p = params(Scenario::Lookup, Target::Redis).random_pool(1, 1, usize::MAX);
        let c = commands(p.op(0).0);
        assert_eq!(c[0][0], "MGET");
        assert!(c[0][1].starts_with("user:"));

        let p = params(Scenario::PingInline, Target::Redis).random_pool(1, 1, usize::MAX);
        assert_eq!(p.op(0).0, b"PING\r\n");
    }

    #[test]
    fn dropin_is_about_ninety_percent_set_and_identical_for_both_targets() {
        let a = params(Scenario::Dropin, Target::Presenced).random_pool(3, 10_000, usize::MAX);
        let b = params(Scenario::Dropin, Target::Redis).random_pool(3, 10_000, usize::MAX);
        assert_eq!(a.bytes, b.bytes);
        let mget = a.ops.iter().filter(|m| m.users == 3).count();
        assert!((800..1200).contains(&mget), "{mget}");
    }

    #[test]
    fn pool_stops_at_byte_cap() {
        let p = params(Scenario::Heartbeat, Target::Redis).random_pool(1, 1_000_000, 10_000);
        assert!(p.bytes.len() >= 10_000 && p.bytes.len() < 10_100);
    }

    #[test]
    fn populate_names_every_id_once_in_order() {
        for target in [Target::Presenced, Target::Redis] {
            let p = params(Scenario::Populate, target);
            let (lo, hi) = (10, 1011);
            let mut next = lo;
            let mut ids = Vec::new();
            let mut ops = 0;
            while next < hi {
                let seg = p.populate_segment(&mut next, hi, 500);
                for i in 0..seg.len() {
                    ops += 1;
                    let (bytes, meta) = seg.op(i);
                    let mut n = 0;
                    for cmd in commands(bytes) {
                        match target {
                            Target::Presenced => {
                                assert_eq!(cmd[0], "MHEARTBEAT");
                                for id in &cmd[1..] {
                                    ids.push(id.parse::<u64>().unwrap());
                                    n += 1;
                                }
                            }
                            Target::Redis => {
                                let id = cmd[1]
                                    .strip_prefix("user:")
                                    .unwrap()
                                    .strip_suffix(":presence")
                                    .unwrap();
                                ids.push(id.parse::<u64>().unwrap());
                                n += 1;
                            }
                        }
                    }
                    assert_eq!(meta.users, n);
                }
            }
            assert_eq!(ids, (lo..hi).collect::<Vec<_>>());
            assert_eq!(ops, p.populate_ops(lo, hi));
        }
    }

    #[test]
    fn rng_below_stays_in_range_and_spreads() {
        let mut r = Rng::new(42);
        let mut seen = [0u32; 10];
        for _ in 0..100_000 {
            let v = r.below(10);
            seen[v as usize] += 1;
        }
        assert!(
            seen.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{seen:?}"
        );
        assert_ne!(Rng::new(0).next_u64(), Rng::new(1).next_u64());
    }

    #[test]
    fn digits_are_canonical() {
        let mut b = [0u8; 20];
        assert_eq!(digits(0, &mut b), b"0");
        assert_eq!(digits(42, &mut b), b"42");
        assert_eq!(digits(u64::MAX, &mut b), b"18446744073709551615");
    }
}
