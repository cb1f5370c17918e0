//! A histogram observed with atomic adds only.
//!
//! prometheus-client's `Histogram` takes a mutex per observation; with a
//! check observed on every runtime worker, that lock was contended on each
//! request. Here an observation is two relaxed atomic adds (its bucket and
//! the sum); a scrape reads them without stopping writers
//! (each series may be a few observations apart, as with any live scrape).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Clones share their counts (one for the registry, one to observe).
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending; the last bucket (+Inf) is implicit.
    bounds: Box<[f64]>,
    /// Observations per bucket (not cumulative); one more than `bounds`.
    /// Their total is the count.
    buckets: Box<[AtomicU64]>,
    /// Sum in nanoseconds (observations are durations in seconds): an
    /// integer add, where an `f64` sum would need a compare-and-swap loop.
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        let bounds: Box<[f64]> = bounds.into_iter().collect();
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds,
                buckets,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Records one duration in seconds (negative and NaN count as 0).
    pub fn observe(&self, seconds: f64) {
        let h = &*self.inner;
        let seconds = if seconds.is_nan() {
            0.0
        } else {
            seconds.max(0.0)
        };
        let bucket = h.bounds.partition_point(|bound| *bound < seconds);
        h.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        h.sum_nanos
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let h = &*self.inner;
        let buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(h.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so the exposition is consistent
        // even while observations land.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn exposition(h: AtomicHistogram) -> String {
        let mut registry = Registry::default();
        registry.register("t", "test", h);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn buckets_are_cumulative_with_upper_bounds_inclusive() {
        let h = AtomicHistogram::new([0.001, 0.01, 0.1]);
        for v in [0.0005, 0.001, 0.002, 0.05, 5.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        let text = exposition(h);
        for line in [
            "t_bucket{le=\"0.001\"} 4",
            "t_bucket{le=\"0.01\"} 5",
            "t_bucket{le=\"0.1\"} 6",
            "t_bucket{le=\"+Inf\"} 7",
            "t_count 7",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("t_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 5.0535).abs() < 1e-6, "sum {sum}");
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = AtomicHistogram::new([0.5]);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || (0..10_000).for_each(|_| h.observe(0.25)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let count: u64 = h
            .inner
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum();
        assert_eq!(count, 40_000);
        assert_eq!(h.inner.buckets[0].load(Ordering::Relaxed), 40_000);
    }
}
