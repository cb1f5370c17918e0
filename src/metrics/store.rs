//! The store's metrics: calls by operation and result, with their latency;
//! (re)connections; whether it is up; the revocation set's size; the
//! shared throttle's blocks and the failures it could not share.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StoreCallLabels {
    /// `revoke`, `load_revocations`, `session_get`, `lease`,
    /// `throttle_count`, `load_throttle_blocks`, ...
    pub op: &'static str,
    /// `ok`, `timeout`, `unavailable` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug)]
pub struct StoreMetrics {
    calls: Family<StoreCallLabels, Histogram>,
    connects: Counter,
    up: Gauge,
    revocations: Gauge,
    throttle_blocks: Gauge,
    throttle_local_only: Counter,
}

impl StoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let calls = Family::<StoreCallLabels, Histogram>::new_with_constructor(
            // 50 µs .. ~0.8 s
            (|| Histogram::new(exponential_buckets(5e-5, 2.0, 15))) as fn() -> Histogram,
        );
        registry.register(
            "store_call_duration_seconds",
            "Calls to the Redis store, by operation and result (ok, timeout, unavailable, error)",
            calls.clone(),
        );
        let connects = Counter::default();
        registry.register(
            "store_connects",
            "Times the store's revocation feed (re)connected and loaded the revocations",
            connects.clone(),
        );
        let up = Gauge::default();
        registry.register(
            "store_up",
            "1 while the store answers and its revocation feed is subscribed",
            up.clone(),
        );
        let revocations = Gauge::default();
        registry.register(
            "store_revocations",
            "Revocations this replica enforces (sessions, users, provider sessions)",
            revocations.clone(),
        );
        let throttle_blocks = Gauge::default();
        registry.register(
            "store_throttle_blocks",
            "Clients and usernames this replica refuses because the shared failure counters reached their limit",
            throttle_blocks.clone(),
        );
        let throttle_local_only = Counter::default();
        registry.register(
            "store_throttle_local_only",
            "Failed authentications counted by this replica only: the store was down or did not answer in time",
            throttle_local_only.clone(),
        );
        Self {
            calls,
            connects,
            up,
            revocations,
            throttle_blocks,
            throttle_local_only,
        }
    }

    pub fn record_call(&self, op: &'static str, result: &'static str, seconds: f64) {
        self.calls
            .get_or_create(&StoreCallLabels { op, result })
            .observe(seconds);
    }

    pub fn record_connect(&self) {
        self.connects.inc();
    }

    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    pub fn set_revocations(&self, n: usize) {
        self.revocations.set(n as i64);
    }

    pub fn set_throttle_blocks(&self, n: usize) {
        self.throttle_blocks.set(n as i64);
    }

    pub fn record_throttle_local_only(&self) {
        self.throttle_local_only.inc();
    }
}
