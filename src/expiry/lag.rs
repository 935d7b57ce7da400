//! How late offline detection is: a histogram of (declared offline - deadline) in
//! milliseconds, for `INFO presence`.
//!
//! Buckets are exact below 1,024 ms and then one per power of two up to about 36 minutes, so
//! recording is one array increment and the histogram is a fixed 2 KiB, whatever the load.

const EXACT_MS: u64 = 1024;
const LOG_BUCKETS: usize = 22;

#[derive(Clone, Debug)]
pub struct LagHistogram {
    exact: Vec<u64>,
    log: [u64; LOG_BUCKETS],
    count: u64,
    max_ms: u64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        Self {
            exact: vec![0; EXACT_MS as usize],
            log: [0; LOG_BUCKETS],
            count: 0,
            max_ms: 0,
        }
    }
}

impl LagHistogram {
    pub fn record(&mut self, lag_ms: u64) {
        if lag_ms < EXACT_MS {
            self.exact[lag_ms as usize] += 1;
        } else {
            let bucket = (63 - lag_ms.leading_zeros() as usize - 10).min(LOG_BUCKETS - 1);
            self.log[bucket] += 1;
        }
        self.count += 1;
        self.max_ms = self.max_ms.max(lag_ms);
    }

    pub fn merge(&mut self, other: &LagHistogram) {
        for (a, b) in self.exact.iter_mut().zip(&other.exact) {
            *a += b;
        }
        for (a, b) in self.log.iter_mut().zip(&other.log) {
            *a += b;
        }
        self.count += other.count;
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ms(&self) -> u64 {
        self.max_ms
    }

    /// The lag at or below which `quantile` of the samples fall (upper bucket bound above
    /// 1,024 ms); 0 with no samples.
    pub fn quantile_ms(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.exact.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ms as u64;
            }
        }
        for (bucket, n) in self.log.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (EXACT_MS << (bucket + 1)).min(self.max_ms);
            }
        }
        self.max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut h = LagHistogram::default();
        assert_eq!(h.quantile_ms(0.99), 0);
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!(h.quantile_ms(0.5), 50);
        assert_eq!(h.quantile_ms(0.99), 99);
        h.record(5_000);
        assert_eq!(h.max_ms(), 5_000);
        assert_eq!(h.quantile_ms(1.0), 5_000);
        let mut total = LagHistogram::default();
        total.merge(&h);
        assert_eq!(total.count(), 101);
    }
}
