//! Prometheus metrics, served on the HTTP port at `/metrics`.

mod histogram;
mod store;

pub use histogram::AtomicHistogram;
pub use store::StoreMetrics;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::decision::{Decision, Verdict};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// Route label (`rules[0].paths[1]`), or `-` when nothing matched.
    pub rule: String,
    pub auth: &'static str,
    pub decision: &'static str,
    pub reason: &'static str,
    /// For `not_allowed`: the kind of condition that failed, else `-`.
    pub condition: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub provider: String,
    /// `ok` or the failure's reason code.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    logins: Family<LoginLabels, Counter>,
    provider_seconds: Family<ProviderLabels, Histogram>,
    checks: Family<CheckLabels, Counter>,
    /// Observed on every check, from every worker: lock-free.
    check_seconds: AtomicHistogram,
    reloads: Family<ResultLabels, Counter>,
    generation: Gauge,
    stale: Gauge,
    /// ADS answers from Envoy, by type and result (ack or nack).
    xds_answers: Family<XdsLabels, Counter>,
    /// The Redis store's calls and health.
    pub store: StoreMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XdsLabels {
    /// `cluster`, `listener` or `route`.
    pub r#type: &'static str,
    pub result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ingress_authz");
        let checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "checks",
            "Check requests decided, by route, auth type, decision and reason",
            checks.clone(),
        );
        // 5 µs .. ~2.6 s: covers cached checks and uncached password hashes.
        let check_seconds = AtomicHistogram::new(exponential_buckets(5e-6, 2.0, 20));
        registry.register(
            "check_duration_seconds",
            "Time to decide one check request",
            check_seconds.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads, by result",
            reloads.clone(),
        );
        let generation = Gauge::default();
        registry.register(
            "config_generation",
            "Generation of the config serving (1 at start, +1 per successful reload)",
            generation.clone(),
        );
        generation.set(1);
        let stale = Gauge::default();
        registry.register(
            "config_stale",
            "1 while the last reload failed and the previous config still serves",
            stale.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Completed login callbacks, by provider and result (ok or a reason code)",
            logins.clone(),
        );
        let provider_seconds = Family::<ProviderLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.005, 2.0, 14))) as fn() -> Histogram,
        );
        registry.register(
            "provider_call_duration_seconds",
            "Identity-provider calls of one login (exchange and profile), by provider and result",
            provider_seconds.clone(),
        );
        let xds_answers = Family::<XdsLabels, Counter>::default();
        registry.register(
            "xds_answers",
            "Envoy's answers to pushed ADS resources, by type and result (ack, nack)",
            xds_answers.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines lost: stderr failed (a full disk, a closed pipe) or did not take them (a pipe nobody reads)",
            crate::logging::dropped_lines().clone(),
        );
        let store = StoreMetrics::register(&mut registry);
        Self {
            store,
            xds_answers,
            registry,
            logins,
            provider_seconds,
            checks,
            check_seconds,
            reloads,
            generation,
            stale,
        }
    }

    pub fn record_check(&self, decision: &Decision<'_>, seconds: f64) {
        let (verdict, reason, condition) = match &decision.verdict {
            Verdict::Allow {
                would_deny: Some((_, reason)),
                ..
            } => ("would_deny", reason.code(), "-"),
            Verdict::Allow { reason, .. } => ("allow", reason.code(), "-"),
            Verdict::Deny(d) | Verdict::Pending { then: d, .. } => (
                "deny",
                d.reason.code(),
                d.condition.map_or("-", |c| c.key()),
            ),
        };
        self.checks
            .get_or_create(&CheckLabels {
                rule: decision.label.unwrap_or("-").to_string(),
                auth: decision.kind.map_or("-", |k| k.as_str()),
                decision: verdict,
                reason,
                condition,
            })
            .inc();
        self.check_seconds.observe(seconds);
    }

    pub fn record_login(&self, provider: &str, result: &'static str) {
        self.logins
            .get_or_create(&LoginLabels {
                provider: provider.to_string(),
                result,
            })
            .inc();
    }

    pub fn record_provider_call(&self, provider: &str, ok: bool, seconds: f64) {
        self.provider_seconds
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
                result: if ok { "ok" } else { "failed" },
            })
            .observe(seconds);
    }

    pub fn record_reload(&self, ok: bool, generation: u64) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.generation.set(generation as i64);
        self.stale.set(i64::from(!ok));
    }

    pub fn record_xds_answer(&self, r#type: &'static str, accepted: bool) {
        let result = if accepted { "ack" } else { "nack" };
        self.xds_answers
            .get_or_create(&XdsLabels { r#type, result })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
