//! A small sliding window of latency samples with cheap percentiles.

/// The last `N` latency samples (nanoseconds) and their p50/p99, recomputed on demand without
/// allocating (the scratch buffer is reused).
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    samples: Vec<u64>,
    scratch: Vec<u64>,
    next: usize,
    filled: bool,
}

impl LatencyWindow {
    /// A window of `capacity` samples (at least 1).
    pub fn new(capacity: usize) -> LatencyWindow {
        let capacity = capacity.max(1);
        LatencyWindow {
            samples: vec![0; capacity],
            scratch: Vec::with_capacity(capacity),
            next: 0,
            filled: false,
        }
    }

    /// Adds a sample, replacing the oldest when full.
    pub fn record(&mut self, ns: u64) {
        self.samples[self.next] = ns;
        self.next += 1;
        if self.next == self.samples.len() {
            self.next = 0;
            self.filled = true;
        }
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        if self.filled {
            self.samples.len()
        } else {
            self.next
        }
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (p50, p99) of the held samples, nearest-rank; (0, 0) when empty.
    pub fn percentiles(&mut self) -> (u64, u64) {
        let n = self.len();
        if n == 0 {
            return (0, 0);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.samples[..n]);
        let rank = |p: f64| ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
        let (i50, i99) = (rank(0.50), rank(0.99));
        let p99 = *self.scratch.select_nth_unstable(i99).1;
        // After the selection, everything below i99 is <= p99, so p50 is found there.
        let p50 = if i50 < i99 {
            *self.scratch[..i99].select_nth_unstable(i50).1
        } else {
            p99
        };
        (p50, p99)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_1_to_100() {
        let mut w = LatencyWindow::new(100);
        for v in (1..=100).rev() {
            w.record(v);
        }
        assert_eq!(w.percentiles(), (50, 99));
    }

    #[test]
    fn window_slides() {
        let mut w = LatencyWindow::new(4);
        for v in [100, 100, 100, 100, 1, 2, 3, 4] {
            w.record(v);
        }
        assert_eq!(w.len(), 4);
        assert_eq!(w.percentiles(), (2, 4));
    }

    #[test]
    fn empty_and_single() {
        let mut w = LatencyWindow::new(8);
        assert!(w.is_empty());
        assert_eq!(w.percentiles(), (0, 0));
        w.record(7);
        assert_eq!(w.percentiles(), (7, 7));
    }
}
