//! A log-linear latency histogram (the HdrHistogram layout with 128 sub-buckets per power of
//! two): recording is an index computation and an increment; values are kept within 0.8%.
//! Written here rather than pulled in as a crate because this is all of it.

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        let sub = (v >> shift) as usize; // in [SUB, 2*SUB)
        ((shift as usize + 1) << SUB_BITS) + (sub - SUB)
    }

    /// The middle of the values that map to bucket `i`.
    fn value(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let sub = ((i & (SUB - 1)) + SUB) as u64;
        (sub << shift) + ((1u64 << shift) >> 1)
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below or at which a fraction `q` of the recorded values lie (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        if rank == self.total {
            return self.max;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_value_round_trip_within_one_percent() {
        let mut prev = 0;
        for v in (0..1_000_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = Hist::index(v);
            assert!(i >= prev && i < BUCKETS, "{v}");
            prev = i;
            let back = Hist::value(i);
            let err = back.abs_diff(v) as f64 / v.max(1) as f64;
            assert!(err <= 1.0 / 128.0, "{v} -> {i} -> {back}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let close = |a: u64, b: u64| (a as f64 / b as f64 - 1.0).abs() < 0.01;
        assert!(close(h.quantile(0.5), 50_000_000), "{}", h.quantile(0.5));
        assert!(close(h.quantile(0.99), 99_000_000));
        assert!(close(h.quantile(0.999), 99_900_000));
        assert_eq!(h.quantile(1.0), 100_000_000);
        let mut g = Hist::new();
        g.record(5);
        g.merge(&h);
        assert_eq!(g.count(), 100_001);
        assert_eq!(g.quantile(0.0), 5);
        assert_eq!(Hist::new().quantile(0.5), 0);
    }
}
